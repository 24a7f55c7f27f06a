"""Extending a painted structure beyond its outermost painted slices, slice by slice, on image evidence.

The signed-distance prior (`prior.py`) interpolates well between painted slices but, beyond the outermost painted
slice of a label, it can only guess how far the structure goes (a taper). Here the structure is *propagated*
outwards one slice at a time along the primary slice axis: slice `z` is decided from

    logit_z = head_weight * H_z - (D_{z-1} + shrink_z) / tau_mm

where `H_z` is the head's log-odds on slice `z` (image evidence), `D_{z-1}` the in-plane signed distance (mm, < 0
inside) of the result on the previous slice (the shape continues), and `shrink_z` the taper's expected growth of
the distance over one slice (the shape prior: without evidence the structure closes like an ellipsoidal cap). The
new slice keeps only what touches the previous one (grown by at most one slice thickness in plane), and the
propagation stops where the structure vanishes (area below `min_area_fraction` of the outer painting), where the
head no longer supports it (mean probability inside below 0.5), at an annotated slice, at the region's edge, or
after `max_length_ratio` x the painting's largest equivalent diameter.

Arrays are `(I, J, K)` crops of the region of interest; distances in mm.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from multimodalgen.fewshot.prior import _equivalent_radius, _taper, slice_signed_distance


@dataclasses.dataclass(frozen=True)
class ExtendConfig:
    """Parameters of the slice-by-slice extension (saved with the few-shot config).

    Attributes:
        enabled: extend beyond the outer painted slices (False: the tapered prior alone decides there).
        tau_mm: softness (mm) of the previous slice's shape in the per-slice decision.
        shrink_weight: multiple of the taper's per-slice growth of the signed distance added as shrinkage.
        min_area_fraction: stop when a slice's area falls below this fraction of the outer painted slice's area.
        min_support: stop when the head's mean probability of the label inside the new slice is below this.
        length_factor: the shrinkage follows an ellipsoidal cap this many times the outer painting's equivalent
            radius long (`single_length_factor` when only one slice holds the label: no other size to compare).
        closing_ratio: an end whose outer painted slice is smaller than this x its painted neighbour (equivalent
            radius) is left to the shape prior's taper (the painting already reaches the structure's end); 0 = always
            extend.
        overshoot: stop after this multiple of the closing length (see `_closing_length`).
        max_length_ratio: stop after this multiple of the largest painted equivalent diameter (mm) beyond the
            outer painting.
    """

    enabled: bool = True
    tau_mm: float = 1.0
    shrink_weight: float = 1.0
    min_area_fraction: float = 0.03
    min_support: float = 0.5
    max_length_ratio: float = 1.0
    overshoot: float = 1.5
    length_factor: float = 1.0
    single_length_factor: float = 3.0
    closing_ratio: float = 0.85

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ExtendConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


def _disk(radius_vox: np.ndarray) -> np.ndarray:
    r = np.maximum(np.asarray(radius_vox, np.float64), 1.0)
    n = np.ceil(r).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"))
    return ((grid / r[:, None, None]) ** 2).sum(0) <= 1.0 + 1e-6


def _closing(outer: int, present: list[int], pm: np.ndarray, in_plane, ratio: float) -> bool:
    """True when the outer painted slice is clearly smaller than its painted neighbour (equivalent radius below
    `ratio` x): the user painted near the end of the structure, the taper of the shape prior fits there."""
    inner = [s for s in present if s != outer]
    if not inner or ratio <= 0:
        return False
    neighbour = min(inner, key=lambda s: abs(s - outer))
    return _equivalent_radius(pm[outer], in_plane) < ratio * _equivalent_radius(pm[neighbour], in_plane)


def _closing_length(outer: int, present: list[int], pm: np.ndarray, in_plane, step: float, max_len: float) -> float:
    """Expected distance (mm) beyond the outer painted slice at which the structure closes: the equivalent radius
    shrinking between the two outer painted slices, continued linearly (x 1.3 for an ellipsoidal cap); `max_len`
    when the structure does not shrink towards the outer slice (or only one slice is painted)."""
    inner = [s for s in present if s != outer]
    if not inner:
        return max_len
    neighbour = min(inner, key=lambda s: abs(s - outer))
    r0 = _equivalent_radius(pm[outer], in_plane)
    r1 = _equivalent_radius(pm[neighbour], in_plane)
    if r1 <= r0 * 1.02:
        return max_len
    return float(np.clip(1.3 * r0 * abs(outer - neighbour) * step / (r1 - r0), 1.5 * step, max_len))


def extend_label(logits: np.ndarray, head_logodds: np.ndarray | None, painted: np.ndarray, annotated: tuple[int, ...],
                 axis: int, spacing, config: ExtendConfig, head_weight: float = 1.0) -> dict:
    """Overwrite one label's fused log-odds beyond its outer painted slices with the propagated structure.

    Args:
        logits: `(I, J, K)` float32 fused log-odds of the label on the box (modified in place beyond the range).
        head_logodds: `(I, J, K)` head log-odds of the label vs background (None: shape only, shrinking).
        painted: `(I, J, K)` bool, the label's painted voxels (read on annotated slices only).
        annotated: indices (box coordinates) of the annotated slices along `axis`.
        axis: primary slice axis.
        spacing: voxel size (mm) along i, j, k.

    Returns:
        {"below": n slices added before the first painting, "above": n after the last}.
    """
    spacing = np.asarray(spacing, np.float64)
    step = float(spacing[axis])
    in_plane = tuple(float(s) for a, s in enumerate(spacing) if a != axis)
    lg = np.moveaxis(logits, axis, 0)
    hd = None if head_logodds is None else np.moveaxis(head_logodds, axis, 0)
    pm = np.moveaxis(painted, axis, 0)
    present = [s for s in sorted(annotated) if pm[s].any()]
    added = {"below": 0, "above": 0}
    if not present:
        return added
    largest = max(_equivalent_radius(pm[s], in_plane) for s in present)
    max_len = config.max_length_ratio * 2.0 * largest
    grow = _disk(np.asarray([max(1.0, step / sp) for sp in in_plane]))
    annotated_set = set(int(s) for s in annotated)
    for direction, outer, key in ((-1, present[0], "below"), (1, present[-1], "above")):
        prev = pm[outer].copy()
        area0 = float(prev.sum())
        r0 = _equivalent_radius(prev, in_plane)
        if _closing(outer, present, pm, in_plane, config.closing_ratio):
            continue  # the painting already closes in on this end: the shape prior's taper decides there
        factor = config.length_factor if len(present) > 1 else config.single_length_factor
        length = factor * max(r0, 1.5 * step)
        stop_at = min(max_len, config.overshoot * _closing_length(outer, present, pm, in_plane, step, max_len))
        z = outer + direction
        while 0 <= z < lg.shape[0] and z not in annotated_set:
            e = abs(z - outer) * step
            if e > stop_at:
                lg[z] = np.minimum(lg[z], -5.0)
                z += direction
                continue
            shrink = config.shrink_weight * (_taper(e, r0, length) - _taper(e - step, r0, length))
            sdf = slice_signed_distance(prev, in_plane)
            cur = -(sdf + shrink) / config.tau_mm
            if hd is not None:
                cur = cur + head_weight * hd[z]
            mask = (cur > 0) & ndi.binary_dilation(prev, grow)
            if mask.any():
                lab, n = ndi.label(mask, structure=np.ones((3, 3), bool))
                keep = np.unique(lab[mask & ndi.binary_dilation(prev, np.ones((3, 3), bool))])
                mask = np.isin(lab, keep[keep > 0])
                mask = ndi.binary_fill_holes(mask)
            support = 1.0 if hd is None or not mask.any() else float(np.mean(1.0 / (1.0 + np.exp(-hd[z][mask]))))
            if mask.sum() < max(2.0, config.min_area_fraction * area0) or support < config.min_support:
                # the structure ends here: nothing of it on this slice or beyond
                rest = range(z, lg.shape[0]) if direction > 0 else range(z, -1, -1)
                for w in rest:
                    if w in annotated_set:
                        break
                    lg[w] = np.minimum(lg[w], -5.0)
                break
            lg[z] = np.where(mask, np.maximum(cur, 1.0), np.minimum(cur, -1.0))
            added[key] += 1
            prev = mask
            z += direction
    return added
