"""Few-shot engine (array level): annotated slices -> 3D label map.

Steps, on a region of interest around the painting (`roi_box`):
1. features of the image channels on the box (`features.FeatureSource`, cached);
2. the head (`head.py`) is trained on the voxels of the annotated slices (or continued from a previous head);
3. its class log-odds are fused with the shape prior of each label (`prior.py`: signed-distance interpolation
   between annotated slices, extrapolated with a taper, confidence falling with the distance to the nearest
   annotated slice): `logit_l = head_weight * (H_l - H_0) + P_l`, background logit 0, smoothed, argmax;
4. post-processing (`postprocess.py`) keeps the components connected to the painting and writes the painting back
   exactly on the annotated slices.
Voxels outside the box are background. All arrays are `(I, J, K)` voxel grids of the image; distances are in mm.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.fewshot.annotations import Annotations
from multimodalgen.fewshot.confidence import confidence_report
from multimodalgen.fewshot.extend import ExtendConfig, extend_label
from multimodalgen.fewshot.features import FeatureConfig, FeatureSource
from multimodalgen.fewshot.head import HeadConfig, build_head, predict_logits, train_head
from multimodalgen.fewshot.postprocess import finalise_labels
from multimodalgen.fewshot.prior import prior_logit, shape_prior
from multimodalgen.progress import Progress

Box = tuple[tuple[int, int, int], tuple[int, int, int]]

#: The head's log-odds are clipped to +- this (a calibrated classifier trained with label smoothing stays inside),
#: so where the prior is below -(limit * head_weight) the head need not be evaluated: background anyway.
HEAD_LOGIT_LIMIT = 6.0


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
    """Everything that decides a few-shot result besides the inputs and the seed.

    Attributes:
        features: which voxel features to compute.
        head: head architecture and training schedule.
        use_head: use the trained head (False = shape prior only, for comparisons).
        use_prior: use the annotation shape prior (False = head only).
        head_weight: weight of the head's log-odds in the fusion.
        tau0, tau_per_mm, extrapolation_factor: prior confidence, see `prior.prior_logit`.
        taper_ratio, gap_fraction: taper length beyond the outer painting, see `prior.shape_prior`.
        smooth_mm: Gaussian smoothing (mm) of the fused logits before the decision.
        margin_mm: in-plane margin (mm) of the region of interest around the painting (at least half its extent).
        band_mm: background voxels closer than this to the painted structure weigh 3x in training.
        max_train_voxels: cap on training voxels (random subsample, class-balanced sampling in training).
        keep_connected: keep only the components touching the painting of their label.
    """

    features: FeatureConfig = FeatureConfig()
    head: HeadConfig = HeadConfig()
    use_head: bool = True
    use_prior: bool = True
    head_weight: float = 1.0
    tau0: float = 0.5
    tau_per_mm: float = 0.5
    extrapolation_factor: float = 1.5
    taper_ratio: float = 1.0
    gap_fraction: float = 0.4
    align: bool = True
    smooth_mm: float = 1.0
    margin_mm: float = 10.0
    band_mm: float = 10.0
    max_train_voxels: int = 200_000
    keep_connected: bool = True
    extend: ExtendConfig = ExtendConfig()

    def __post_init__(self) -> None:
        if not (self.use_head or self.use_prior):
            raise UserInputError("nothing to segment with", expected="use_head or use_prior", got="both off")
        if min(self.tau0, self.margin_mm, self.max_train_voxels) <= 0 or self.tau_per_mm < 0:
            raise UserInputError("invalid few-shot configuration", expected="positive tau0, margin, sample cap",
                                 got=str(dataclasses.asdict(self)))

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["features"] = self.features.to_dict()
        out["head"] = self.head.to_dict()
        out["extend"] = self.extend.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FewShotConfig":
        data = dict(data)
        features = FeatureConfig.from_dict(data.pop("features", {}))
        head = HeadConfig.from_dict(data.pop("head", {}))
        extend = ExtendConfig.from_dict(data.pop("extend", {}))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(features=features, head=head, extend=extend, **{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass
class FewShotResult:
    """Output of `fit_predict`: the label map on the whole grid, the trained head and a report."""

    labels: np.ndarray
    head: object
    box: Box
    report: dict


# -- region of interest --------------------------------------------------------------------------------------------
def roi_box(annotations: Annotations, spacing, config: FewShotConfig, max_size: int | None = None) -> Box:
    """Voxel box `(start, stop)` around the painting: in-plane margin `max(margin_mm, extent/2)`, along the
    primary axis the painted range extended by 0.75 x the structure's largest in-plane extent (>= 3 slices).
    With `max_size`, the box is cut to at most that many voxels per axis around the painting's centre."""
    spacing = np.asarray(spacing, np.float64)
    shape = annotations.array.shape
    idx = np.argwhere(annotations.array > 0)
    lo, hi = idx.min(0), idx.max(0) + 1
    extent_mm = (hi - lo) * spacing
    margin = np.maximum(config.margin_mm, 0.5 * extent_mm)
    axis = annotations.primary_axis
    in_plane_extent = max(e for a, e in enumerate(extent_mm) if a != axis)
    margin[axis] = max(0.75 * in_plane_extent, 3 * spacing[axis])
    grow = np.ceil(margin / spacing).astype(int)
    start = np.maximum(lo - grow, 0)
    stop = np.minimum(hi + grow, shape)
    if max_size is not None:
        centre = (lo + hi) // 2
        half = max_size // 2
        start = np.maximum(start, centre - half)
        stop = np.minimum(stop, start + max_size)
    return tuple(int(v) for v in start), tuple(int(v) for v in stop)  # type: ignore[return-value]


def _crop(array: np.ndarray, box: Box) -> np.ndarray:
    return array[tuple(slice(a, b) for a, b in zip(*box))]


# -- training data -------------------------------------------------------------------------------------------------
def training_voxels(features: np.ndarray, classes: np.ndarray, near: np.ndarray, max_voxels: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x `(N, F)`, y `(N,)`, weight `(N,)`) from the known voxels (`classes >= 0`) of a box, subsampled."""
    flat_classes = classes.ravel()
    known = np.flatnonzero(flat_classes >= 0)
    rng = np.random.default_rng(seed)
    if known.size > max_voxels:
        # keep every foreground voxel up to half the budget, fill with background
        fg = known[flat_classes[known] > 0]
        bg = known[flat_classes[known] == 0]
        fg = rng.choice(fg, min(fg.size, max_voxels // 2), replace=False) if fg.size else fg
        bg = rng.choice(bg, min(bg.size, max_voxels - fg.size), replace=False)
        known = np.sort(np.concatenate([fg, bg]))
    x = features.reshape(features.shape[0], -1)[:, known].T
    y = flat_classes[known]
    weight = np.where((y == 0) & near.ravel()[known], 3.0, 1.0)
    return np.ascontiguousarray(x, np.float32), y.astype(np.int64), weight


def label_priors(annotations: Annotations, box: Box, spacing, config: FewShotConfig) -> np.ndarray:
    """`(L, *box_shape)` prior log-odds per label (per voxel, from the axis whose annotated slice is nearest)."""
    crop = _crop(annotations.array, box)
    out = np.zeros((len(annotations.labels),) + crop.shape, np.float32)
    for li, value in enumerate(annotations.labels):
        best_gap = np.full(crop.shape, np.inf, np.float32)
        for entry in annotations.slices:
            a = entry.axis
            inside = [s - box[0][a] for s in entry.indices if box[0][a] <= s < box[1][a]]
            if not inside:
                continue
            prior = shape_prior(crop == value, tuple(inside), a, spacing, taper_ratio=config.taper_ratio,
                                  gap_fraction=config.gap_fraction, align=config.align)
            logit = prior_logit(prior, tau0=config.tau0, tau_per_mm=config.tau_per_mm,
                                extrapolation_factor=config.extrapolation_factor)
            shape = [1, 1, 1]
            shape[a] = -1
            gap = np.broadcast_to(prior.slice_gap.reshape(shape), crop.shape)
            better = gap < best_gap
            out[li][better] = logit[better]
            best_gap = np.where(better, gap, best_gap)
        out[li][np.isinf(best_gap)] = -30.0
    return out


def _strided_logits(head, feats: np.ndarray, mask: np.ndarray | None, stride: int, spacing, device) -> np.ndarray:
    """Head logits `(C, *box)`, evaluated on a strided sub-grid (axes finer than 2 mm / stride) and repeated."""
    steps = [stride if stride > 1 and sp * stride <= 2.0 + 1e-6 else 1 for sp in spacing]
    if max(steps) == 1:
        return predict_logits(head, feats, device=device, mask=mask)
    index = tuple(slice(None, None, st) for st in steps)
    sub = predict_logits(head, feats[(slice(None),) + index], device=device,
                         mask=None if mask is None else mask[index])
    for axis, st in enumerate(steps):
        sub = np.repeat(sub, st, axis=axis + 1) if st > 1 else sub
    return sub[(slice(None),) + tuple(slice(0, n) for n in feats.shape[1:])]


def _undecided(priors: np.ndarray, limit: float) -> np.ndarray:
    """Voxels where the head can change the decision: some label's prior within +-`limit` of 0, or two labels'
    priors both above -`limit` (the head decides between them). Deep inside one label (prior > limit) or far from
    every label (all priors < -limit) the decision is the prior's whatever the head says (its log-odds are clipped
    to +-`HEAD_LOGIT_LIMIT`)."""
    near = np.abs(priors) < limit
    out = near.any(0)
    if priors.shape[0] > 1:
        out |= (priors > -limit).sum(0) >= 2
    return out


def _primary_in_box(annotations: Annotations, box: Box) -> tuple[int, tuple[int, ...]]:
    entry = annotations.slices[0]
    a = entry.axis
    return a, tuple(s - box[0][a] for s in entry.indices if box[0][a] <= s < box[1][a])


def _beyond_painting(classes: np.ndarray, annotations: Annotations, box: Box) -> np.ndarray:
    """Boolean box mask: the slices beyond the outer annotated slices holding any label (primary axis), in plane
    within the painting's bounding box grown by half its size (where the extension may need the head)."""
    axis, inside = _primary_in_box(annotations, box)
    out = np.zeros(classes.shape, bool)
    fg = classes > 0
    if not inside or not fg.any():
        return out
    idx = np.argwhere(fg)
    lo, hi = idx.min(0), idx.max(0) + 1
    grow = (hi - lo) // 2 + 2
    lo, hi = np.maximum(lo - grow, 0), np.minimum(hi + grow, classes.shape)
    index = [slice(int(a), int(b)) for a, b in zip(lo, hi)]
    present = [s for s in inside if fg.take(s, axis=axis).any()]
    below, above = min(present), max(present)
    for part in (slice(0, below), slice(above + 1, classes.shape[axis])):
        sub = list(index)
        sub[axis] = part
        out[tuple(sub)] = True
    return out


def _extend(logits: np.ndarray, head_logodds, annotations: Annotations, box: Box, spacing,
            config: FewShotConfig) -> dict:
    """Propagate each label beyond its outer painted slices (`extend.extend_label`); in place on `logits`."""
    axis, inside = _primary_in_box(annotations, box)
    crop = _crop(annotations.array, box)
    out = {}
    for li, value in enumerate(annotations.labels):
        out[int(value)] = extend_label(logits[li], None if head_logodds is None else head_logodds[li], crop == value,
                                       inside, axis, spacing, config.extend, config.head_weight)
    return out


# -- the engine ----------------------------------------------------------------------------------------------------
def fit_predict(source: FeatureSource, annotations: Annotations, config: FewShotConfig | None = None, *,
                head=None, seed: int = 0, device="cpu", progress=None, box: Box | None = None,
                head_stride: int = 1) -> FewShotResult:
    """Train (or continue) the head on the annotated slices and segment the region of interest.

    Args:
        source: features of the image channels (same grid as `annotations.array`).
        annotations: validated painting (`annotations.find_annotations`).
        head: a head from a previous call with the same labels and features (continued for `update_steps`).
        box: region to segment (default `roi_box`); voxels outside are background.
        head_stride: evaluate the head on every `head_stride`-th voxel along the axes finer than 2 mm / stride and
            repeat its output (previews: about stride^3 fewer evaluations; the prior stays full resolution).

    Returns:
        `FewShotResult` with `labels` `(I, J, K)` (label values of `annotations.labels`, 0 = background).
    """
    config = config or FewShotConfig()
    progress = progress or Progress.null()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spacing = source.spacing
    box = box or roi_box(annotations, spacing, config)
    n_classes = 1 + len(annotations.labels)
    classes = _crop(annotations.class_map(), box)
    progress.update("features", 0.0, "computing voxel features")
    feats = source.features(box) if config.use_head else None
    timings["features"] = time.perf_counter() - t0
    priors = label_priors(annotations, box, spacing, config)
    logits = priors if config.use_prior else np.zeros_like(priors)
    training_log: dict = {}
    if config.use_head:
        t1 = time.perf_counter()
        near = (priors.max(0) > -config.band_mm / config.tau0) if config.use_prior else np.ones(classes.shape, bool)
        x, y, w = training_voxels(feats, classes, near, config.max_train_voxels, seed)
        continuing = head is not None and head[-1].out_features == n_classes and head[0].in_features == x.shape[1]
        if not continuing:
            head = build_head(x.shape[1], n_classes, config.head, seed)
        steps = config.head.steps if not continuing else (
            config.head.preview_steps if head_stride > 1 else config.head.update_steps)
        training_log = train_head(head, x, y, config.head, steps=steps, seed=seed, device=device, sample_weight=w,
                                  progress=progress.sub("training", 0.1, 0.7) if hasattr(progress, "sub") else None)
        training_log["continued"] = bool(continuing)
        timings["training"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        progress.update("predicting", 0.7, "applying the head")
        # where the prior alone is decisive (far from every painted shape) the head cannot change the decision
        undecided = _undecided(priors, HEAD_LOGIT_LIMIT * config.head_weight + 1.0) if config.use_prior else None
        if undecided is not None and config.extend.enabled:
            undecided |= _beyond_painting(classes, annotations, box)
        head_logits = _strided_logits(head, feats, undecided, head_stride, spacing, device)
        head_logodds = np.clip(head_logits[1:] - head_logits[:1], -HEAD_LOGIT_LIMIT, HEAD_LOGIT_LIMIT)
        logits = logits + config.head_weight * head_logodds
        timings["head_voxels"] = float(undecided.mean()) if undecided is not None else 1.0
        timings["prediction"] = time.perf_counter() - t2
    extended = {}
    if config.use_prior and config.extend.enabled:
        extended = _extend(logits, head_logodds if config.use_head else None, annotations, box, spacing, config)
    labels_box = finalise_labels(logits, classes, annotations.labels, spacing, smooth_mm=config.smooth_mm,
                                 keep_connected=config.keep_connected)
    confidence, suggested = confidence_report(logits, labels_box, classes >= 0, annotations.labels,
                                              annotations.primary_axis, box[0])
    labels = np.zeros(annotations.array.shape, labels_box.dtype)
    labels[tuple(slice(a, b) for a, b in zip(*box))] = labels_box
    timings["total"] = time.perf_counter() - t0
    progress.update("done", 1.0, "segmented")
    report = {"box": [list(box[0]), list(box[1])], "labels": list(annotations.labels),
              "axes": [{"axis": s.axis, "slices": list(s.indices)} for s in annotations.slices],
              "notes": list(annotations.notes), "encoder": source.use_encoder, "encoder_note": source.encoder_note,
              "n_features": source.n_features, "training": training_log, "extended_slices": extended,
              "confidence": confidence, "suggested_slice": suggested, "head_stride": head_stride,
              "seconds": {k: round(v, 3) for k, v in timings.items()}}
    return FewShotResult(labels, head, box, report)


def segment_arrays(channels: np.ndarray, annotation: np.ndarray, affine: np.ndarray, *, axis=None, labels=None,
                   modalities=None, config: FewShotConfig | None = None, seed: int = 0, device="cpu",
                   progress=None) -> np.ndarray:
    """Array-level few-shot: `(C, I, J, K)` (or `(I, J, K)`) images + `(I, J, K)` painting -> `(I, J, K)` labels.

    `affine` is the grid's voxel -> RAS matrix (spacing and the default slice axis come from it).
    """
    from multimodalgen.fewshot.annotations import find_annotations

    config = config or FewShotConfig()
    channels = np.asarray(channels)
    channels = channels[None] if channels.ndim == 3 else channels
    if channels.shape[1:] != np.asarray(annotation).shape:
        raise UserInputError("the painting does not match the images", expected=f"shape {channels.shape[1:]}",
                             got=f"shape {np.asarray(annotation).shape}")
    source = FeatureSource(channels, affine, modalities, config.features, device)
    annotations = find_annotations(annotation, affine, axis=axis, labels=labels)
    return fit_predict(source, annotations, config, seed=seed, device=device, progress=progress).labels
