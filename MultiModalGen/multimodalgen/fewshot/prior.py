"""Shape prior from the annotation geometry: signed-distance interpolation between annotated slices.

For one label and one slice axis, each annotated slice gets its in-plane signed distance map `D_s` (mm, negative
inside the painted region, positive outside; an annotated slice without the label is "absent"). Unknown slices get:
- between two annotated slices: the linear interpolation of their distance maps along the axis (the shape morphs
  from one painting to the next; an absent side makes the structure shrink to nothing half way);
- beyond the outermost annotated slice holding the label: its distance map plus a taper that grows with the
  distance `e` (mm) beyond it, following an ellipsoidal cap `r(e) = r0 * sqrt(1 - (e / L)^2)`, with `L` from the
  change of size between the two outer annotated slices, else `taper_ratio` x the slice's equivalent radius.
Every voxel also gets `d`, its distance (mm, along the axis) to the nearest annotated slice: the prior's
confidence falls with `d` (`prior_logit`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

#: Distance (mm) used for "far outside" in absent slices and past the taper's end.
_FAR_MM = 1e3


@dataclasses.dataclass
class ShapePrior:
    """Signed distance prior of one label on one axis.

    Attributes:
        distance: `(I, J, K)` float32, interpolated signed distance (mm; < 0 inside the expected shape).
        slice_gap: `(n_slices,)` float32, distance (mm) of each slice to the nearest annotated slice along `axis`.
        beyond: `(n_slices,)` bool, True for slices outside the annotated range of this label (extrapolated).
        axis: the slice axis.
    """

    distance: np.ndarray
    slice_gap: np.ndarray
    beyond: np.ndarray
    axis: int


def slice_signed_distance(mask2d: np.ndarray, spacing2d) -> np.ndarray:
    """In-plane signed distance (mm) of a 2D boolean mask: < 0 inside, > 0 outside, float32."""
    mask2d = np.asarray(mask2d, bool)
    if not mask2d.any():
        return np.full(mask2d.shape, _FAR_MM, np.float32)
    if mask2d.all():
        return np.full(mask2d.shape, -_FAR_MM, np.float32)
    outside = ndi.distance_transform_edt(~mask2d, sampling=spacing2d)
    inside = ndi.distance_transform_edt(mask2d, sampling=spacing2d)
    # zero crossing half way between the last inside and the first outside voxel
    return (outside - inside).astype(np.float32) + np.where(mask2d, 0.5, -0.5).astype(np.float32) * float(
        min(spacing2d))


def _equivalent_radius(mask2d: np.ndarray, spacing2d) -> float:
    return float(np.sqrt(mask2d.sum() * float(np.prod(spacing2d)) / np.pi))


def _taper(e_mm: float, r0: float, length: float) -> float:
    """How much (mm) the signed distance grows at `e_mm` beyond the last painting (ellipsoidal cap)."""
    if e_mm >= length:
        return r0 + (e_mm - length) + 1.0
    return r0 * (1.0 - np.sqrt(max(0.0, 1.0 - (e_mm / length) ** 2)))


def shape_prior(mask: np.ndarray, annotated: tuple[int, ...], axis: int, spacing, *,
                taper_ratio: float = 1.0, gap_fraction: float = 0.4, align: bool = True) -> ShapePrior:
    """Signed-distance shape prior of one binary structure from its annotated slices.

    Args:
        mask: `(I, J, K)` bool, the label's painted voxels (only annotated slices are read).
        annotated: indices of the annotated slices along `axis` (with or without the label).
        axis: slice axis (0, 1, 2).
        spacing: voxel size (mm) along i, j, k.
        taper_ratio: taper length beyond the outer painting, as a multiple of its equivalent radius.
        gap_fraction: with several painted slices, the taper length is at most this fraction of the gap between
            the outer painted slice and its neighbour (a user painting every `g` mm rarely leaves much more than
            `g / 2` unpainted at the ends).
        align: interpolate the two neighbouring paintings after moving their centroids onto the interpolated
            centroid (shape-based interpolation that follows a structure running obliquely to the slices).

    Returns:
        `ShapePrior` with the interpolated distance map on the whole grid.
    """
    spacing = np.asarray(spacing, np.float64)
    in_plane = tuple(float(s) for a, s in enumerate(spacing) if a != axis)
    n = mask.shape[axis]
    moved = np.moveaxis(np.asarray(mask, bool), axis, 0)
    annotated = sorted(int(s) for s in annotated)
    sdf = {s: slice_signed_distance(moved[s], in_plane) for s in annotated}
    radius = {s: float(max(0.0, -sdf[s].min())) for s in annotated}
    present = [s for s in annotated if moved[s].any()]
    out = np.full((n,) + moved.shape[1:], _FAR_MM, np.float32)
    step = float(spacing[axis])
    positions = np.arange(n)
    ann = np.asarray(annotated)
    gap = (np.abs(positions[:, None] - ann[None, :]).min(1) * step).astype(np.float32)
    beyond = np.zeros(n, bool)
    if not present:
        return ShapePrior(np.moveaxis(out, 0, axis), gap, ~np.isin(positions, ann), axis)
    lo, hi = present[0], present[-1]
    for z in range(n):
        if z in sdf:
            out[z] = sdf[z]
            continue
        if z < lo or z > hi:
            beyond[z] = True
            o = lo if z < lo else hi
            # an annotated slice without the label between z and o: the structure is absent there
            if any((z < s < o) or (o < s < z) for s in annotated):
                continue
            out[z] = sdf[o] + _taper(abs(z - o) * step, radius[o], _taper_length(o, z, present, moved, sdf,
                                                                                 in_plane, step, taper_ratio,
                                                                                 gap_fraction))
            continue
        left = max(s for s in annotated if s < z)
        right = min(s for s in annotated if s > z)
        t = (z - left) / (right - left)
        a, b = sdf[left], sdf[right]
        if not moved[left].any():
            a = np.full_like(b, max(radius[right], step))
        if not moved[right].any():
            b = np.full_like(a, max(radius[left], step))
        if align and moved[left].any() and moved[right].any():
            a, b = _aligned_pair(a, b, moved[left], moved[right], t)
        out[z] = (1.0 - t) * a + t * b
    return ShapePrior(np.moveaxis(out, 0, axis), gap, beyond, axis)


def _aligned_pair(a: np.ndarray, b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray,
                  t: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance maps `a`, `b` shifted (voxels, linear) so both centroids sit at the centroid interpolated at `t`."""
    ca = np.asarray(ndi.center_of_mass(mask_a))
    cb = np.asarray(ndi.center_of_mass(mask_b))
    target = (1.0 - t) * ca + t * cb
    shift_a, shift_b = target - ca, target - cb
    if max(np.abs(shift_a).max(), np.abs(shift_b).max()) < 0.25:
        return a, b
    return (ndi.shift(a, shift_a, order=1, mode="nearest"), ndi.shift(b, shift_b, order=1, mode="nearest"))


def _taper_length(outer: int, z: int, present: list[int], moved: np.ndarray, sdf: dict, in_plane, step: float,
                  taper_ratio: float, gap_fraction: float) -> float:
    """Length (mm) over which the structure vanishes beyond the outer painted slice `outer`."""
    r0 = _equivalent_radius(moved[outer], in_plane)
    default = max(taper_ratio * r0, 1.5 * step)
    inner = [s for s in present if s != outer]
    if not inner:
        return default
    neighbour = min(inner, key=lambda s: abs(s - outer))
    default = max(min(default, gap_fraction * abs(outer - neighbour) * step), 1.5 * step)
    r1 = _equivalent_radius(moved[neighbour], in_plane)
    if r1 <= r0 * 1.02:
        return default
    # linear shrink rate between the two outer slices, continued; an ellipsoidal cap ends a bit later
    linear = r0 * abs(outer - neighbour) * step / (r1 - r0)
    return float(np.clip(1.3 * linear, 1.5 * step, default))


def prior_logit(prior: ShapePrior, *, tau0: float = 0.5, tau_per_mm: float = 0.5,
                extrapolation_factor: float = 1.5) -> np.ndarray:
    """Log-odds of the structure from the shape prior: `-distance / tau`, `tau = tau0 + tau_per_mm * gap`.

    `tau` (mm) grows with the distance to the nearest annotated slice (and faster beyond the annotated range), so
    the prior is sharp next to a painting and soft far from it. Returns float32 `(I, J, K)`, clipped to +-30.
    """
    tau = tau0 + tau_per_mm * prior.slice_gap * np.where(prior.beyond, extrapolation_factor, 1.0)
    shape = [1, 1, 1]
    shape[prior.axis] = -1
    logit = -prior.distance / tau.reshape(shape).astype(np.float32)
    return np.clip(logit, -30.0, 30.0).astype(np.float32)
