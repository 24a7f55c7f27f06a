"""Slicer-side helpers of the MultiModalGen module (kept out of MultiModalGen.py so each file has one job).

- `bridge`: MRML nodes <-> backend `Volume` / label maps / displacement fields (pure math + thin node wrappers);
- `actions`: per-action node export (NIfTI files for the worker) and result import;
- `runner`: settings + backend + the running task (progress, cancel, results on the main thread);
- `worker_client`: local worker process or remote server, same interface (standard library only);
- `dependencies`: check and, after confirmation, install Python packages; `parameters`: user settings;
- `segment_info`: segment names, colours and terminology entries (from the models' label definitions);
- `sample_data`: the shipped samples as Slicer Sample Data sources; `startup`: hooks run at `startupCompleted()`
  (register the few-shot Segment Editor effect of `SegmentEditorMultiModalGenLib`, and the sample data).

Nothing here imports torch; `slicer`/`qt` are imported only inside the node wrappers that need them.
"""
