"""Rigid then affine optimisation on modality-independent features (torch, Adam, two resolutions).

The transform (fixed RAS -> moving RAS) is parametrised around the fixed centre `c` as
``T(x) = T0(c + R(w) (I + B) (x - c) + t)`` with T0 the initial alignment, `w` a rotation vector (rad),
`B` a 3x3 matrix (scale + shear; zero and frozen in rigid mode) and `t` a translation (mm). The loss is the
mean squared feature difference between the fixed features and the moving features sampled at T(x)
(`LinearConfig.similarity` "mind"), or minus the mutual information of single-channel intensity images ("mi",
see `mi_check.py` for when), over (at most `max_points` of) the fixed foreground points (weighted by the
masks). Each level `(f, r, a)` runs `r`
rigid then `a` affine Adam iterations on the given features box-averaged `f` times (cosine step decay).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from multimodalgen.registration.adam import Adam
from multimodalgen.registration.sampling import apply_matrix, sample


@dataclasses.dataclass
class LinearConfig:
    """Iterations per level `(pool factor, rigid iterations, affine iterations)` and Adam step sizes."""

    levels: tuple = ((1, 40, 40),)
    lr_translation_mm: float = 1.0
    lr_rotation_rad: float = 0.02
    lr_matrix: float = 0.01
    max_points: int = 5_000
    #: "mind": mean squared difference of the given features (MIND-SSC); "mi": minus the mutual information of the
    #: given single-channel intensity images (Parzen histograms, `mutual_information.py`), points whose moving
    #: position falls outside the moving grid left out.
    similarity: str = "mind"


def rotation_matrix(w):
    """Rodrigues: rotation vector `(3,)` (rad, torch) -> `(3, 3)` rotation (differentiable at 0)."""
    import torch

    theta2 = (w * w).sum()
    k = torch.zeros(3, 3, dtype=w.dtype)
    k[0, 1], k[0, 2], k[1, 2] = -w[2], w[1], -w[0]
    k[1, 0], k[2, 0], k[2, 1] = w[2], -w[1], w[0]
    theta = torch.sqrt(theta2 + 1e-20)
    a = torch.sin(theta) / theta
    b = (1 - torch.cos(theta)) / (theta2 + 1e-20)
    return torch.eye(3, dtype=w.dtype) + a * k + b * (k @ k)


def compose(init: np.ndarray, centre: np.ndarray, w, b, t):
    """The 4x4 torch matrix of T = T0 o (x -> c + R(w)(I + B)(x - c) + t)."""
    import torch

    m = rotation_matrix(w) @ (torch.eye(3, dtype=w.dtype) + b)
    c = torch.as_tensor(centre, dtype=w.dtype)
    inner = torch.eye(4, dtype=w.dtype)
    inner[:3, :3] = m
    inner[:3, 3] = c - m @ c + t
    return torch.as_tensor(init, dtype=w.dtype) @ inner


def pooled_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    """Voxel -> RAS affine of a grid box-averaged by `factor` (kernel = stride = factor)."""
    out = np.asarray(affine, np.float64).copy()
    out[:3, 3] = affine[:3, :3] @ np.full(3, (factor - 1) / 2.0) + affine[:3, 3]
    out[:3, :3] = affine[:3, :3] * factor
    return out


def _pool(x, factor: int):
    import torch.nn.functional as F

    return x if factor == 1 else F.avg_pool3d(x, factor, stride=factor, ceil_mode=True)


def feature_loss(fix_vals, mov_feat, mov_index, weights):
    """Weighted mean squared difference: fixed values `(C, N)` vs moving features sampled at `(N, 3)` indices."""
    diff = sample(mov_feat, mov_index) - fix_vals
    per_point = diff.pow(2).mean(dim=0)
    return (per_point * weights).sum() / weights.sum().clamp_min(1e-6)


def mi_loss(fix_vals, mov_img, mov_index, weights):
    """Minus the mutual information of fixed values `(1, N)` and the moving image `(1, 1, i, j, k)` sampled at
    `(N, 3)` indices; points outside the moving grid get no weight (`sampled_mutual_information`)."""
    from multimodalgen.registration.mutual_information import sampled_mutual_information

    return -sampled_mutual_information(fix_vals[0], mov_img, mov_index, weights)


def optimise_linear(fix_feat, fix_affine: np.ndarray, mov_feat, mov_affine: np.ndarray, init: np.ndarray,
                    centre: np.ndarray, mode: str = "affine", fix_weight=None, config: LinearConfig | None = None,
                    progress=None) -> tuple[np.ndarray, dict]:
    """Optimise a rigid or affine fixed -> moving transform.

    Args:
        fix_feat, mov_feat: `(1, C, I, J, K)` features on the fixed / moving working grids (similarity "mi":
            `(1, 1, I, J, K)` intensity images in [0, 1]).
        fix_affine, mov_affine: their voxel -> RAS affines.
        init: 4x4 initial transform; centre: rotation centre (RAS mm).
        mode: "rigid" or "affine".
        fix_weight: optional `(1, 1, I, J, K)` weights (mask) on the fixed grid.

    Returns:
        (4x4 RAS affine fixed -> moving, {"loss_before", "loss_after", "iterations"}).
    """
    import torch

    cfg = config or LinearConfig()
    if cfg.similarity not in ("mind", "mi"):
        raise ValueError(f"LinearConfig.similarity must be 'mind' or 'mi', got {cfg.similarity!r}")
    dtype = torch.float64
    w = torch.zeros(3, dtype=dtype, requires_grad=True)
    b = torch.zeros(3, 3, dtype=dtype, requires_grad=True)
    t = torch.zeros(3, dtype=dtype, requires_grad=True)
    inv_mov = [None]
    weight_full = fix_weight if fix_weight is not None else torch.ones_like(fix_feat[:, :1])
    history = {"iterations": 0}
    total_iters = sum(r + (a if mode == "affine" else 0) for _, r, a in cfg.levels)
    done = 0
    for factor, n_rigid, n_affine in cfg.levels:
        f = _pool(fix_feat, factor)
        m = _pool(mov_feat, factor)
        wgt = _pool(weight_full, factor)[0, 0]
        f_aff = pooled_affine(fix_affine, factor)
        m_aff = pooled_affine(mov_affine, factor)
        inv_mov[0] = torch.as_tensor(np.linalg.inv(m_aff), dtype=dtype)
        sel = torch.nonzero(wgt > 0.05)
        if sel.shape[0] > cfg.max_points:
            sel = sel[torch.linspace(0, sel.shape[0] - 1, cfg.max_points).long()]
        pts_world = apply_matrix(f_aff, sel.to(dtype))
        fix_vals = f[0][:, sel[:, 0], sel[:, 1], sel[:, 2]]
        weights = wgt[sel[:, 0], sel[:, 1], sel[:, 2]].float()
        m = m.float()

        def loss_fn():
            mat = inv_mov[0] @ compose(init, centre, w, b, t)
            idx = apply_matrix(mat, pts_world).float()
            if cfg.similarity == "mi":
                return mi_loss(fix_vals, m, idx, weights)
            return feature_loss(fix_vals, m, idx, weights)

        if "loss_before" not in history:
            with torch.no_grad():
                history["loss_before"] = float(loss_fn())
        stages = [("rigid", n_rigid)] + ([("affine", n_affine)] if mode == "affine" else [])
        for stage, n_iter in stages:
            if n_iter <= 0:
                continue
            params = [{"params": [t], "lr": cfg.lr_translation_mm},
                      {"params": [w], "lr": cfg.lr_rotation_rad}]
            if stage == "affine":
                params.append({"params": [b], "lr": cfg.lr_matrix})
            opt = Adam(params)
            base = [g["lr"] for g in opt.param_groups]
            for it in range(n_iter):
                scale = 0.5 * (1 + math.cos(math.pi * it / n_iter)) * 0.95 + 0.05
                for g, lr in zip(opt.param_groups, base):
                    g["lr"] = lr * scale
                opt.zero_grad()
                loss = loss_fn()
                loss.backward()
                opt.step()
                done += 1
                if progress is not None and it % 5 == 0:
                    progress.update("linear", done / max(1, total_iters), f"{stage} {factor}x loss {float(loss.detach()):.4f}")
            history["iterations"] += n_iter
        with torch.no_grad():
            history[f"loss_level{factor}"] = float(loss_fn())
    with torch.no_grad():
        history["loss_after"] = float(loss_fn())
        out = compose(init, centre, w, b, t).numpy()
    return out, history
