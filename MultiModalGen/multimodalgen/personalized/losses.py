"""Losses of personalized training. Shapes as in `model`: z `(B, M, C, I, J, K)`, present `(B, M)` bool,
logits `(B, K, I, J, K)`, labels `(B, I, J, K)` int64, images / recon `(B, M, I, J, K)`.

- `segmentation_loss`: soft Dice (foreground classes) + cross-entropy.
- `reconstruction_loss`: L1 of g_m(X_h) against every modality that exists in the data (`available`), including
  those dropped from the input (cross-modal reconstruction).
- `invariance_loss`: 1 - cosine similarity (over channels, per voxel) between every pair of present modalities'
  features: all modalities of one subject should map to the same X_h.
- `prior_loss`: mean squared deviation of X_h from the prior B (with no prior: from 0).
- `random_patch_mask` / `masked_reconstruction_loss` / `feature_reconstruction_loss`: MR-Pretrain (UMD) --
  75 % of 4^3 patches of the input are blanked, the masked voxels are reconstructed, and the masked input's
  features regress the unmasked input's (stop-gradient teacher) features.
- `gm_coord_coefficients` + `scale_gradient`: GM-Coord (UMD) -- a modality whose features alone already score
  better than the others gets its gradient scaled down by k = 1 - tanh(eta * (rho - 1)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_background_dice: bool = True
                      ) -> torch.Tensor:
    """Soft Dice over foreground classes + cross-entropy (both means)."""
    ce = F.cross_entropy(logits, labels)
    probs = logits.softmax(dim=1)
    onehot = F.one_hot(labels, logits.shape[1]).permute(0, 4, 1, 2, 3).to(probs.dtype)
    start = 1 if ignore_background_dice else 0
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)[start:]
    denom = (probs + onehot).sum(dims)[start:]
    dice = (2 * inter + 1e-3) / (denom + 1e-3)
    return ce + (1.0 - dice.mean())


def reconstruction_loss(recon: torch.Tensor, images: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """L1 between `recon` and `images` over the modalities `available` `(B, M)` in the data."""
    err = (recon - images).abs().mean(dim=(2, 3, 4))                    # (B, M)
    weights = available.to(err.dtype)
    return (err * weights).sum() / weights.sum().clamp_min(1.0)


def invariance_loss(z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean over subjects and present pairs (m < m') of 1 - cos(z_m, z_m') per voxel; 0 with < 2 present."""
    total, pairs = z.new_zeros(()), 0
    m = z.shape[1]
    for a in range(m):
        for b in range(a + 1, m):
            both = present[:, a] & present[:, b]
            if not bool(both.any()):
                continue
            cos = F.cosine_similarity(z[both, a], z[both, b], dim=1, eps=1e-6)
            total = total + (1.0 - cos).mean() * both.sum()
            pairs += int(both.sum())
    return total / max(pairs, 1)


def prior_loss(xh: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
    """Mean squared deviation of X_h from the prior map (or from 0 without a prior)."""
    return (xh - prior).pow(2).mean() if prior is not None else xh.pow(2).mean()


def random_patch_mask(shape: tuple[int, ...], ratio: float, patch: int, generator: torch.Generator,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool mask `(B, M, I, J, K)` (True = masked) blanking `ratio` of the `patch`^3 patches, independently per
    subject and modality. I, J, K must be multiples of `patch`."""
    b, m, i, j, k = shape
    grid = (i // patch, j // patch, k // patch)
    scores = torch.rand((b, m) + grid, generator=generator)
    n = scores[0, 0].numel()
    kth = max(1, int(round(ratio * n)))
    thresh = scores.view(b, m, -1).sort(dim=-1).values[..., kth - 1]
    coarse = scores <= thresh.view(b, m, 1, 1, 1)
    full = coarse.repeat_interleave(patch, 2).repeat_interleave(patch, 3).repeat_interleave(patch, 4)
    return full.to(device)


def masked_reconstruction_loss(recon: torch.Tensor, images: torch.Tensor, mask: torch.Tensor,
                               present: torch.Tensor) -> torch.Tensor:
    """L1 on masked voxels of present modalities only."""
    weights = mask & present[:, :, None, None, None]
    if not bool(weights.any()):
        return recon.new_zeros(())
    return (recon - images).abs()[weights].mean()


def feature_reconstruction_loss(student: torch.Tensor, teacher: torch.Tensor, present: torch.Tensor
                                ) -> torch.Tensor:
    """1 - cos(student, stop-grad teacher) per voxel over present modalities (features `(B, M, C, ...)`)."""
    cos = F.cosine_similarity(student, teacher.detach(), dim=2, eps=1e-6)        # (B, M, I, J, K)
    weights = present.to(cos.dtype)
    return ((1.0 - cos).mean(dim=(2, 3, 4)) * weights).sum() / weights.sum().clamp_min(1.0)


@torch.no_grad()
def gm_coord_coefficients(model, z: torch.Tensor, present: torch.Tensor, labels: torch.Tensor,
                          eta: float = 0.3) -> torch.Tensor:
    """Per-modality gradient coefficients `(M,)` (1 for absent or weak modalities).

    Score s_m = mean softmax probability of the true class from the segmentation head on z_m alone (+ prior);
    rho_m = s_m / mean of the other present modalities' scores; k_m = 1 - tanh(eta * max(rho_m - 1, 0)).
    """
    m = z.shape[1]
    scores = torch.full((m,), float("nan"), device=z.device)
    for k in range(m):
        rows = present[:, k]
        if not bool(rows.any()):
            continue
        single = torch.zeros_like(present)
        single[:, k] = True
        xh = model.fuse(z[rows], single[rows])
        probs = model.segment_logits(xh).softmax(dim=1)
        scores[k] = probs.gather(1, labels[rows][:, None]).mean()
    coeffs = torch.ones(m, device=z.device)
    valid = ~torch.isnan(scores)
    if int(valid.sum()) < 2:
        return coeffs
    for k in range(m):
        if not bool(valid[k]):
            continue
        others = scores[valid & (torch.arange(m, device=z.device) != k)]
        rho = scores[k] / others.mean().clamp_min(1e-6)
        coeffs[k] = 1.0 - torch.tanh(eta * torch.clamp(rho - 1.0, min=0.0))
    return coeffs


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved_tensors
        return grad * scale.view((1, -1) + (1,) * (grad.dim() - 2)), None


def scale_gradient(z: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Identity on `z` `(B, M, ...)`; the backward pass multiplies modality m's gradient by `coeffs[m]`."""
    return _ScaleGrad.apply(z, coeffs.to(z.dtype))
