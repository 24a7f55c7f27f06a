"""Mutual information of two intensity samples with Parzen (Gaussian) histograms, differentiable (torch).

Used by the linear stage as its similarity for pairs where local descriptors (MIND-SSC) do not correspond, such
as a smooth, low-resolution functional image (PET/SPECT-like uptake) against a T1: MI only assumes that the
fixed intensity predicts the moving intensity, not that both images have edges at the same places. Intensities
are expected in [0, 1] (the working images of `grid.prepare_image`); values outside are clamped.
"""

from __future__ import annotations

#: Histogram bins per image and the Parzen window's standard deviation in bins (Mattes-like defaults).
MI_BINS = 32
MI_PARZEN_SIGMA_BINS = 1.0


def parzen_weights(values, bins: int = MI_BINS, sigma_bins: float = MI_PARZEN_SIGMA_BINS):
    """Soft histogram memberships of `(N,)` values in [0, 1] -> `(N, bins)`, each row summing to 1."""
    import torch

    centres = torch.linspace(0.0, 1.0, bins, dtype=values.dtype, device=values.device)
    width = sigma_bins / (bins - 1)
    d = (values.clamp(0.0, 1.0)[:, None] - centres[None]) / width
    w = torch.exp(-0.5 * d * d)
    return w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)


def mutual_information(fix_vals, mov_vals, weights=None, bins: int = MI_BINS,
                       sigma_bins: float = MI_PARZEN_SIGMA_BINS, normalised: bool = False):
    """MI (nats) between paired samples `(N,)` / `(N,)` (optionally weighted `(N,)`), differentiable in both.

    `normalised=True` returns Studholme's NMI = (H(F) + H(M)) / H(F, M) instead (in [1, 2]).
    """
    import torch

    if fix_vals.shape != mov_vals.shape or fix_vals.ndim != 1:
        raise ValueError(f"mutual_information needs two (N,) samples, got {tuple(fix_vals.shape)} and "
                         f"{tuple(mov_vals.shape)}")
    wf = parzen_weights(fix_vals, bins, sigma_bins)
    wm = parzen_weights(mov_vals, bins, sigma_bins)
    if weights is not None:
        wf = wf * weights[:, None]
    joint = wf.T @ wm
    joint = joint / joint.sum().clamp_min(1e-12)
    pf, pm = joint.sum(dim=1), joint.sum(dim=0)
    eps = 1e-10
    h_joint = -(joint * torch.log(joint + eps)).sum()
    h_f = -(pf * torch.log(pf + eps)).sum()
    h_m = -(pm * torch.log(pm + eps)).sum()
    if normalised:
        return (h_f + h_m) / h_joint.clamp_min(eps)
    return h_f + h_m - h_joint


def sampled_mutual_information(fix_vals, mov_img, mov_index, weights=None):
    """MI of fixed values `(N,)` and the moving image `(1, 1, i, j, k)` sampled (trilinear) at `(N, 3)` float voxel
    indices, optionally weighted `(N,)`; points outside the moving grid (more than half a voxel beyond its outer
    centres) get no weight. Differentiable in the indices (the linear stage's loss) and usable as a score."""
    import torch

    from multimodalgen.registration.sampling import sample

    size = torch.as_tensor([float(n) for n in mov_img.shape[2:]], dtype=mov_index.dtype, device=mov_index.device)
    inside = ((mov_index > -0.5) & (mov_index < size - 0.5)).all(dim=1).to(fix_vals.dtype)
    w = inside if weights is None else weights * inside
    return mutual_information(fix_vals, sample(mov_img, mov_index)[0], w)
