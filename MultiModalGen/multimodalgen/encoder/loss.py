"""Voxel-level supervised contrastive loss across views (anatomix's SupPatchNCE, multi-layer, balanced sampling).

For every sample b and every decoder level l, `n_voxels` voxel positions are drawn with *balanced* sampling
over the labels of view 0 (each label present gets ~n_voxels / L positions). The same positions are read in
every view; a position's label in view v is view v's label there (views may be slightly deformed). Features
go through a per-level projection head (used only in training), are L2-normalised, and the SupCon "all" loss
with temperature tau is computed over the V * n samples: positives of an anchor are all other samples with the
same label (including the same voxel in the other views). The loss is the mean over levels and samples.

Optional *voxel identity* term (weight `identity_weight`, levels at >= 1/2 resolution): an InfoNCE where the
positive of a view-0 sample is the same position in view 1 (and vice versa) and the negatives are the other
sampled positions plus one nearby position per sample (2-4 voxels away at full resolution). It makes the
features locally distinctive (needed for registration and voxel matching), which pure label-level SupCon
does not ask for. Views with their own deformation skip it (their positions do not correspond exactly).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ProjectionHead(nn.Module):
    """Per-voxel MLP `(N, C) -> (N, dim)`: Linear -> ReLU -> Linear. Training only; not shipped."""

    def __init__(self, channels: int, dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_heads(level_channels: list[int], dim: int = 128) -> nn.ModuleList:
    """One projection head per decoder level."""
    return nn.ModuleList([ProjectionHead(c, dim) for c in level_channels])


def downsample_labels(labels: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Nearest (cell-centre) downsampling of int labels `(..., I, J, K)` to `(..., *size)` (integer factors)."""
    out = labels
    for axis, n in enumerate(size):
        full = labels.shape[-3 + axis]
        f = full // n
        idx = torch.arange(n, device=labels.device) * f + f // 2
        out = out.index_select(out.dim() - 3 + axis, idx)
    return out


def balanced_indices(labels: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """Flat indices (<= n) into `labels` (any shape) with about n / L positions per present label L.

    Labels with fewer voxels than their share give all their voxels. Deterministic given `gen`.
    """
    flat = labels.reshape(-1)
    present = torch.unique(flat)
    per = max(1, n // int(present.numel()))
    # a random score per voxel, then the `per` lowest scores within each label
    score = torch.rand(flat.shape, generator=gen, device=flat.device)
    order = torch.argsort(flat.to(torch.float64) * 2.0 + score.to(torch.float64))
    sorted_labels = flat[order]
    starts = torch.searchsorted(sorted_labels, present)
    counts = torch.bincount(torch.searchsorted(present, flat), minlength=present.numel())
    take = torch.clamp(counts, max=per)
    offsets = torch.repeat_interleave(starts, take)
    within = torch.arange(int(take.sum()), device=flat.device) - torch.repeat_interleave(
        torch.cumsum(take, 0) - take, take)
    return order[offsets + within]


def supcon_loss(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon ("all" anchors) loss. z: `(M, D)` L2-normalised, y: `(M,)` labels. Scalar tensor.

    L = -mean_i 1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p/t) / sum_{a != i} exp(z_i.z_a/t)), over anchors with
    at least one positive.
    """
    m = z.shape[0]
    sim = z @ z.t() / temperature
    eye = torch.eye(m, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~eye
    n_pos = pos.sum(1)
    valid = n_pos > 0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(1)[valid] / n_pos[valid])
    return per_anchor.mean()


def neighbour_indices(idx: torch.Tensor, size: tuple[int, int, int], low: int, high: int,
                      gen: torch.Generator) -> torch.Tensor:
    """Flat indices of positions `low..high` voxels (Chebyshev, random direction) from each flat index in `idx`."""
    coords = torch.stack(torch.unravel_index(idx, size), dim=1)
    mag = torch.randint(low, high + 1, (idx.numel(), 1), generator=gen, device=idx.device)
    direction = torch.randint(-1, 2, (idx.numel(), 3), generator=gen, device=idx.device)
    axis = torch.randint(0, 3, (idx.numel(),), generator=gen, device=idx.device)
    direction[torch.arange(idx.numel(), device=idx.device), axis] = 1  # never the zero offset
    sizes = torch.tensor(size, device=idx.device)
    q = torch.minimum(torch.clamp(coords + direction * mag, min=0), sizes - 1)
    return (q[:, 0] * size[1] + q[:, 1]) * size[2] + q[:, 2]


def identity_nce(z0: torch.Tensor, z1: torch.Tensor, n0: torch.Tensor, n1: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE, positive = same position. z0/z1: `(n, D)` samples of views 0/1 at the same positions,
    n0/n1: `(n, D)` nearby-position negatives of each view. All L2-normalised."""
    target = torch.arange(z0.shape[0], device=z0.device)
    l01 = torch.cat([z0 @ z1.t(), z0 @ n1.t()], dim=1) / temperature
    l10 = torch.cat([z1 @ z0.t(), z1 @ n0.t()], dim=1) / temperature
    return 0.5 * (F.cross_entropy(l01, target) + F.cross_entropy(l10, target))


def multilevel_contrastive_loss(levels: list[torch.Tensor], labels: torch.Tensor, heads: nn.ModuleList,
                                n_voxels: int, temperature: float, gen: torch.Generator,
                                identity_weight: float = 0.0, identity_temperature: float = 0.2,
                                full_size: int | None = None) -> tuple[torch.Tensor, list[float]]:
    """The training loss.

    Args:
        levels: per level, features `(B * V, C_l, i_l, j_l, k_l)` (view-major within a sample: index b * V + v).
        labels: `(B, V, I, J, K)` int64 labels of each view.
        heads: projection heads, one per level.
        n_voxels: positions sampled per sample and level.
        temperature: SupCon temperature (0.33 in anatomix).
        gen: generator for the voxel sampling (on the labels' device).
        identity_weight: weight of the voxel identity term (0 = off).
        identity_temperature: its InfoNCE temperature.
        full_size: full-resolution side length (default: the labels' first spatial size).
    Returns:
        (scalar loss, per-level loss values as floats).
    """
    b, v = labels.shape[:2]
    total = labels.new_zeros((), dtype=torch.float32)
    per_level = []
    for feats, head in zip(levels, heads):
        size = tuple(feats.shape[2:])
        lab = downsample_labels(labels, size)                 # (B, V, i, j, k)
        level_loss = feats.new_zeros(())
        factor = (full_size or labels.shape[2]) // size[0]
        use_identity = identity_weight > 0 and factor <= 2
        for s in range(b):
            idx = balanced_indices(lab[s, 0], n_voxels, gen)
            flat = feats[s * v:(s + 1) * v].flatten(2)
            f = flat[:, :, idx]  # (V, C, n)
            z = F.normalize(head(f.permute(0, 2, 1).reshape(-1, f.shape[1])), dim=1)
            y = lab[s].flatten(1)[:, idx].reshape(-1)
            level_loss = level_loss + supcon_loss(z, y, temperature)
            if use_identity and bool((lab[s, 0] == lab[s, 1]).all()):
                nb = neighbour_indices(idx, size, max(1, 2 // factor), max(1, 4 // factor), gen)
                fn = flat[:2, :, nb]
                zn = F.normalize(head(fn.permute(0, 2, 1).reshape(-1, fn.shape[1])), dim=1).view(2, -1, z.shape[1])
                zz = z.view(v, -1, z.shape[1])
                level_loss = level_loss + identity_weight * identity_nce(zz[0], zz[1], zn[0], zn[1],
                                                                         identity_temperature)
        level_loss = level_loss / b
        per_level.append(float(level_loss.detach()))
        total = total + level_loss
    return total / len(levels), per_level


def feature_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-channel normalised squared error of output features `(N, C, I, J, K)` against a frozen teacher's.

    L = mean_c mean_voxels (s_c - t_c)^2 / var(t_c): 0 when the student reproduces the teacher, about 2 for
    unrelated features of the same scale. Used to keep a shipped encoder's voxel-matching features while a new
    objective (the tissue-role loss) is added: the objectives otherwise compete for the same 16 channels.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student features {tuple(student.shape)} and teacher features {tuple(teacher.shape)} "
                         "differ; distil from an encoder with the same output channels")
    dims = [0] + list(range(2, teacher.dim()))
    var = teacher.var(dim=dims, keepdim=True).clamp_min(1e-6)
    return ((student - teacher) ** 2 / var).mean()

