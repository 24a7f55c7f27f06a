"""One-time hooks run when Slicer has started (`startupCompleted()`): register the few-shot Segment Editor effect
and the Sample Data entries. Imports Slicer modules only inside the functions (this file loads outside Slicer)."""

from __future__ import annotations

import logging
import pathlib

#: Name of the few-shot Segment Editor effect (shown in the editor's effect list and tooltips).
EFFECT_NAME = "MultiModalGen few-shot"
EFFECT_SOURCE = pathlib.Path(__file__).resolve().parent.parent / "SegmentEditorMultiModalGenLib" / \
    "SegmentEditorEffect.py"


def registerEditorEffect() -> None:
    """Register the scripted effect with the Segment Editor (as Slicer's ScriptedSegmentEditorEffect template)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    instance = effects.qSlicerSegmentEditorScriptedEffect(None)
    instance.setPythonSource(str(EFFECT_SOURCE).replace("\\", "/"))
    instance.self().register()


def registerSampleData() -> None:
    """Add the shipped sample volumes to Slicer's Sample Data module (category "MultiModalGen")."""
    try:
        import SampleData
    except ImportError:  # Sample Data module disabled: nothing to register
        logging.info("MultiModalGen: Sample Data module not available; sample volumes not registered")
        return
    from MultiModalGenLib.sample_data import sampleDataSources

    for source in sampleDataSources():
        SampleData.SampleDataLogic.registerCustomSampleDataSource(**source)
