"""Few-shot segmentation: paint a structure on a few slices (or give labelled support volumes), get it in 3D.

Public API (imported lazily so that `import multimodalgen.fewshot` stays light):

* `segment_arrays(channels, annotation, affine, ...)` -> `(I, J, K)` labels (array level, see `engine.py`);
* `segment_from_slices(images, annotations, *, axis=None, labels=None, device="cpu", progress=None, seed=0)`
  -> label Volume on the image grid (see `api.py`);
* `segment_from_support(support_images, support_labels, query_images, ...)` -> label Volume on the query grid
  (see `support.py`);
* `FewShotSession`: interactive loop with warm features and head (see `session.py`);
* `fewshot_files`: the file-level `fewshot` verb (painted slices, support volumes or a saved task; see
  `driver.py`); `save_task` / `load_task` / `apply_task`: task files (see `task.py`).

Modules: annotations (slice detection, validation), features (voxel features + cache), prior (shape prior), extend
(propagation beyond the outer painted slices), head (light MLP), engine (array level), postprocess, confidence
(per-label confidence, suggested next slice), session, support, task (task files), transfer (applying a task:
checks, alignment of its spatial prior, fusion, warnings), inputs (grid checks), api (Volume level), driver (file
level), cli.
"""

from __future__ import annotations

_EXPORTS = {
    "segment_from_slices": "multimodalgen.fewshot.api",
    "segment_arrays": "multimodalgen.fewshot.engine",
    "fewshot_files": "multimodalgen.fewshot.driver",
    "segment_from_support": "multimodalgen.fewshot.support",
    "FewShotSession": "multimodalgen.fewshot.session",
    "FewShotConfig": "multimodalgen.fewshot.engine",
    "save_task": "multimodalgen.fewshot.task",
    "load_task": "multimodalgen.fewshot.task",
    "apply_task": "multimodalgen.fewshot.task",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'multimodalgen.fewshot' has no attribute {name!r}")
