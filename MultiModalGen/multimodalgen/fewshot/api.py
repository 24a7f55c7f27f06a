"""Volume-level few-shot API: `segment_from_slices` (what scripts call; the file-level verb is `driver.py`).

`segment_from_slices(images, annotations)`: the image channels of one patient (Volumes on one grid, e.g. T1, T2)
and a label map painted on a few slices (same grid) -> a label map on the image grid. Grids are never changed
silently (see `inputs.py`); the run's report is in `volume.metadata["fewshot"]`.
"""

from __future__ import annotations

from multimodalgen.fewshot.inputs import align_annotations, align_channels, as_channel_list, resolve_device
from multimodalgen.volume import Volume

__all__ = ["segment_from_slices", "as_channel_list", "align_channels", "align_annotations", "resolve_device"]

_resolve_device = resolve_device  # the name support.py imports


def segment_from_slices(images, annotations: Volume, *, axis=None, labels=None, device="cpu", progress=None,
                        seed: int = 0, config=None, resample: bool = False, task=None, session=None) -> Volume:
    """Segment the painted structure(s) in 3D from a few painted slices.

    Args:
        images: the patient's image channels: a list of scalar Volumes on one grid (or one Volume).
        annotations: label map on the image grid; every slice (along `axis`) holding painting is fully annotated.
        axis: slice axis (0 = i, 1 = j, 2 = k), a list of axes, or None to detect it.
        labels: label values to segment (None = every painted label).
        device: "cpu", "cuda", "auto" or a torch.device.
        progress: `multimodalgen.progress.Progress` (or None).
        seed: seed of every random choice (same inputs + seed -> same output).
        config: `FewShotConfig` (None = defaults).
        resample: resample channels / the painting on other grids onto the first image's grid (reported).
        task: a task folder (or loaded `Task`) whose head initialises the training (warm start).
        session: a `FewShotSession` to reuse (features and head stay warm).

    Returns:
        Label Volume on the first image's grid (uint8 label values, 0 = background); the run's report in
        `metadata["fewshot"]`.
    """
    from multimodalgen.fewshot.session import FewShotSession

    if session is None:
        session = FewShotSession(images, config=config, device=device, seed=seed, resample=resample, task=task)
    return session.segment(annotations, axis=axis, labels=labels, progress=progress, resample=resample)
