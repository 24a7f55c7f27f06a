"""The "MultiModalGen few-shot" Segment Editor effect.

- `SegmentEditorEffect`: the scripted effect class Slicer loads (options panel, observers, timer; needs Slicer);
- `effect_logic`: what the effect does (preview after strokes, Apply / Cancel, support-case mode), no Qt widgets;
- `effect_inputs`: one run's inputs (painting or support case, editor state) as worker params;
- `exchange`: files to and from the worker in Slicer's (K, J, I) order, without axis reordering;
- `masking`: the editor's masking rules (editable area, intensity range, overwrite) as numpy functions;
- `result_fields`: optional fields of a few-shot result (confidence, suggested next slice) shown when present.

Only `SegmentEditorEffect` imports slicer/qt; nothing here imports torch (the engine runs in the worker).
"""
