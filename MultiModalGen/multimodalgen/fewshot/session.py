"""Interactive few-shot session: one patient's features and the trained head stay warm between paintings.

Typical loop (the Slicer worker keeps one session per patient):

    session = FewShotSession([t1, t2], device="cpu")
    session.warm_up()                          # optional: whole-volume features now, while the user paints
    quick = session.preview(painting)          # crop (<= 128^3) around the painting: about a second
    full = session.segment(painting)           # region of interest of the whole volume, continues the head
    full = session.segment(painting_with_one_more_slice)   # incremental: continues the head (fewer steps)
    session.save_task("my_task")               # reuse the head on other patients

Every call returns a label Volume on the image grid (0 outside the region computed) whose
`metadata["fewshot"]` holds the report (box, slices, timings, notes, whether the head was continued).
"""

from __future__ import annotations

import copy
import time

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.fewshot.annotations import Annotations, find_annotations
from multimodalgen.fewshot.inputs import align_annotations, align_channels, as_channel_list, resolve_device
from multimodalgen.fewshot.engine import FewShotConfig, FewShotResult, fit_predict, roi_box
from multimodalgen.fewshot.features import FeatureCache, FeatureSource
from multimodalgen.volume import Volume

#: Edge (voxels) of the preview crop.
PREVIEW_SIZE = 128


class FewShotSession:
    """Keeps features (cached per box) and the head of one patient warm across calls.

    Args:
        images: the patient's channels (scalar Volumes on one grid, or one `(C, I, J, K)` Volume).
        config: `FewShotConfig` (default: the task's, else the defaults).
        device: "cpu", "cuda", "auto" or a torch.device.
        seed: base seed; call `n` of the session uses `seed + n` (a replayed sequence of calls is identical).
        resample: allow (reported) resampling of channels / paintings on other grids.
        task: a `Task` (or task folder) whose head is the starting point (warm start; its labels must match).
    """

    def __init__(self, images, *, config: FewShotConfig | None = None, device="cpu", seed: int = 0,
                 resample: bool = False, task=None, cache: FeatureCache | None = None):

        if task is not None and not hasattr(task, "head"):
            from multimodalgen.fewshot.task import load_task

            task = load_task(task)
        self.notes: list[str] = []
        self.images = align_channels(as_channel_list(images), resample, self.notes)
        self.reference = self.images[0]
        self.config = config or (task.config if task is not None else FewShotConfig())
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.source = FeatureSource(np.stack([v.array for v in self.images]), self.reference.affine,
                                    [v.modality for v in self.images], self.config.features, self.device,
                                    cache or FeatureCache())
        self.head = copy.deepcopy(task.head) if task is not None else None
        self.labels: tuple[int, ...] | None = tuple(task.labels) if task is not None else None
        self.task_labels = self.labels
        self.last_result: Volume | None = None
        if task is not None and task.n_features != self.source.n_features:
            raise UserInputError("the task does not fit these images", expected=f"{task.n_features} features "
                                 f"({len(task.modalities)} channel(s): {task.modalities})",
                                 got=f"{self.source.n_features} features from {len(self.images)} channel(s)",
                                 fix="give the same modalities as the task was trained with")
        self.calls = 0
        self.last_report: dict = {}
        self._segment_names: dict = {}

    # -- public ------------------------------------------------------------------------------------------------
    def warm_up(self, progress=None) -> float:
        """Compute (and cache) the whole volume's features now; returns the seconds it took."""
        t0 = time.perf_counter()
        self.source.features(None)
        return time.perf_counter() - t0

    def preview(self, annotations, *, axis=None, labels=None, max_size: int = PREVIEW_SIZE, progress=None,
                resample: bool = False, head_stride: int = 2) -> Volume:
        """Quick result on a crop of at most `max_size` voxels per axis around the painting (the head evaluated on
        every `head_stride`-th voxel of the fine axes; `segment()` then gives the full-resolution result)."""
        ann = self._annotations(annotations, axis, labels, resample)
        box = roi_box(ann, self.source.spacing, self.config, max_size=max_size)
        return self._run(ann, box, progress, preview=True, head_stride=head_stride)

    def segment(self, annotations, *, axis=None, labels=None, progress=None, resample: bool = False) -> Volume:
        """Result on the region of interest of the whole volume (continues the current head when compatible)."""
        ann = self._annotations(annotations, axis, labels, resample)
        return self._run(ann, None, progress, preview=False)

    def reset(self) -> None:
        """Forget the head (the next call trains from scratch); features stay cached."""
        self.head = None
        self.labels = None

    def save_task(self, path):
        """Save the current head and config as a task folder (see `task.py`); returns its path."""
        from multimodalgen.fewshot.task import save_task

        if self.head is None:
            raise UserInputError("nothing to save yet", expected="a trained head",
                                 fix="run segment() or preview() with a painting first")
        from multimodalgen.fewshot.transfer import head_prior_agreement

        agreement = head_prior_agreement(self.head, self.source, self.last_result.array, self.labels or ()) \
            if self.last_result is not None else None
        return save_task(path, self.head, self.config, self.labels or (), [v.modality for v in self.images],
                         self.source.n_features, self.last_report, result=self.last_result, reference=self.reference,
                         agreement=agreement)

    # -- internals ---------------------------------------------------------------------------------------------
    def _annotations(self, annotations, axis, labels, resample: bool) -> Annotations:
        notes = list(self.notes)
        self._segment_names = {}
        if isinstance(annotations, Volume):
            self._segment_names = {int(seg["label"]): seg for seg in annotations.metadata.get("segments", [])
                                   if isinstance(seg, dict) and "label" in seg}
            array = align_annotations(annotations, self.reference, resample, notes)
        else:
            array = np.asarray(annotations)
            if array.shape != self.reference.shape3d:
                raise UserInputError("the painting array does not match the image",
                                     expected=f"shape {self.reference.shape3d}", got=f"shape {array.shape}",
                                     fix="paint on the image's grid")
        ann = find_annotations(array, self.reference.affine, axis=axis, labels=labels)
        ann.notes = notes + ann.notes
        if self.task_labels is not None and ann.labels != self.task_labels:
            raise UserInputError("the painting's labels are not the task's", expected=f"labels "
                                 f"{list(self.task_labels)}", got=f"labels {list(ann.labels)}",
                                 fix="paint with the task's labels, or run without the task")
        return ann

    def _run(self, ann: Annotations, box, progress, preview: bool, head_stride: int = 1) -> Volume:
        head = self.head if self.labels == ann.labels else None
        result: FewShotResult = fit_predict(self.source, ann, self.config, head=head, seed=self.seed + self.calls,
                                            device=self.device, progress=progress, box=box,
                                            head_stride=head_stride)
        self.calls += 1
        self.head, self.labels = result.head, ann.labels
        report = dict(result.report, preview=preview, call=self.calls,
                      feature_cache={"hits": self.source.cache.hits, "misses": self.source.cache.misses})
        self.last_report = report
        names = self._segment_names
        segments = [dict(names.get(int(v), {}), label=int(v)) for v in ann.labels]
        for seg in segments:
            seg.setdefault("name", f"label {seg['label']}")
        meta = {"fewshot": report, "segments": segments}
        self.last_result = Volume(result.labels, self.reference.affine.copy(), "LABEL", meta)
        return self.last_result
