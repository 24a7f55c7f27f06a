"""ConvexAdam-style deformable registration (Siebert, Grossbroehmer, Hansen & Heinrich 2021/2024), on features.

Works in the voxel index space of the fixed working grid (isotropic, `spacing` mm). The moving features are
first resampled through the affine result onto that grid (`mov_warped`), so the deformable stage estimates a
residual displacement `d(x)` (working voxels) with ``mov_warped(x + d(x)) ~ fix(x)``.

1. **Coupled-convex discrete stage**: the fixed features are box-averaged into cells of `cell` voxels; for every
   cell and every integer displacement in ``[-search, search]^3`` voxels the patch SSD to the (box-filtered)
   moving features is computed (a correlation volume), smoothed over neighbouring cells, and minimised with
   coupled-convex iterations: argmin of ``cost(d) + alpha |d - smooth(d_prev)|^2`` for increasing alpha.
   Optionally the same is done in the other direction and both fields are made inverse-consistent.
2. **Instance optimisation (Adam)**: a dense field on a grid `adam_factor` times coarser than the working grid
   (initialised from stage 1) is optimised with Adam on the feature SSD plus a diffusion regulariser
   ``lambda * mean |grad d|^2``; the field is smoothed by three box filters every step. Optionally the field is
   a stationary velocity integrated by scaling and squaring (diffeomorphic).
"""

from __future__ import annotations

import dataclasses

from multimodalgen.registration.adam import Adam
from multimodalgen.registration.sampling import index_grid, sample, smooth_field


@dataclasses.dataclass
class ConvexAdamConfig:
    """Parameters of the deformable stage (voxel units are working-grid voxels)."""

    cell: int = 2                # voxels per cell of the discrete stage
    search: int = 2              # search radius of the discrete stage, in steps
    step: int = 2                # voxels between candidate displacements (search range = search * step voxels)
    coupling: tuple = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    inverse_consistent: bool = False
    ic_iterations: int = 15
    adam_factor: int = 2         # Adam grid = working grid / adam_factor
    adam_iterations: int = 60
    adam_lr: float = 0.25        # Adam step (Adam-grid voxels)
    relinearise: int = 5         # Adam steps between re-samplings of the moving features
    diffusion: float = 6.0       # lambda of the diffusion regulariser (similarity = SSD summed over channels)
    smooth_passes: int = 3
    diffeomorphic: bool = False
    squaring_steps: int = 6

    def __post_init__(self):
        if self.cell < 1 or self.search < 1 or self.adam_factor < 1 or self.adam_iterations < 0:
            raise ValueError(f"invalid ConvexAdamConfig {self}")


def box(x, kernel: int):
    """Centred box filter (odd kernel, replicate padding) of `(1, C, I, J, K)`; kernel 1 returns x."""
    from multimodalgen.features.mind import box_filter

    return box_filter(x, kernel)


def forward_box(x, kernel: int):
    """Mean of `x` over ``[v, v + kernel)`` along each axis (replicate padding at the far end)."""
    import torch.nn.functional as F

    if kernel <= 1:
        return x
    for dim in (2, 3, 4):
        pad = [0] * 6
        pad[2 * (4 - dim) + 1] = kernel - 1
        xp = F.pad(x, tuple(pad), mode="replicate")
        n = x.shape[dim]
        acc = xp.narrow(dim, 0, n).clone()
        for o in range(1, kernel):
            acc += xp.narrow(dim, o, n)
        x = acc / kernel
    return x


def correlation_volume(fix, mov, cell: int, search: int, step: int = 1):
    """Patch SSD between cells of `fix` and shifted `mov` (both `(1, C, I, J, K)` on one grid).

    Candidate shifts are ``step * (-search..search)`` voxels along each axis.

    Returns:
        cost `(S, Ic, Jc, Kc)` with S = (2 search + 1)^3 (shift order: i slowest, k fastest), and the shifts
        `(S, 3)` in voxels. Cell c covers voxels ``[c * cell, (c + 1) * cell)``.
    """
    import torch
    import torch.nn.functional as F

    if step % cell == 0:
        return _correlation_cells(fix, mov, cell, search, step // cell)
    return _correlation_strided(fix, mov, cell, search, step)


def _correlation_strided(fix, mov, cell: int, search: int, step: int):
    """`correlation_volume` for any step: strided views into the box-filtered moving features."""
    import torch
    import torch.nn.functional as F

    c = fix.shape[1]
    f_cells = F.avg_pool3d(fix, cell, stride=cell, ceil_mode=True)[0]
    ic, jc, kc = f_cells.shape[1:]
    # moving box-averaged over `cell` voxels starting at each voxel (same support as one cell)
    m = forward_box(mov, cell)
    reach = search * step
    need = [(n - 1) * cell + 1 + 2 * reach for n in (ic, jc, kc)]
    extra = [max(0, nd - (s + 2 * reach)) for nd, s in zip(need, m.shape[2:])]
    m = F.pad(m, (reach, reach + extra[2], reach, reach + extra[1], reach, reach + extra[0]), mode="replicate")[0]
    search = reach
    r = torch.arange(-reach, reach + 1, step)
    shifts = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    cost = torch.empty((shifts.shape[0], ic, jc, kc), dtype=fix.dtype, device=fix.device)
    for n, (a, b, d) in enumerate(shifts.tolist()):
        sl = m[:, search + a: search + a + (ic - 1) * cell + 1: cell,
               search + b: search + b + (jc - 1) * cell + 1: cell,
               search + d: search + d + (kc - 1) * cell + 1: cell]
        cost[n] = (f_cells - sl).pow_(2).sum(0) / c
    return cost, shifts.to(fix.dtype)


def _correlation_cells(fix, mov, cell: int, search: int, cells_per_step: int):
    """`correlation_volume` when the shifts are whole cells (step = cells_per_step * cell): the same values, computed
    on cell averages (cell-sized arrays instead of strided views into voxel-sized ones: ~3x faster on CPU)."""
    import torch
    import torch.nn.functional as F

    f_cells = F.avg_pool3d(fix, cell, stride=cell, ceil_mode=True)[0]
    ic, jc, kc = f_cells.shape[1:]
    r = search * cells_per_step  # reach in cells
    # moving cells [c * cell, (c + 1) * cell) with the voxel-level replicate padding of `forward_box` at the far end
    far = [(n + r) * cell - s for n, s in zip((ic, jc, kc), mov.shape[2:])]
    m = F.pad(mov, (0, far[2], 0, far[1], 0, far[0]), mode="replicate")
    m = F.pad(F.avg_pool3d(m, cell, stride=cell), (r, 0, r, 0, r, 0), mode="replicate")[0]
    steps = torch.arange(-search, search + 1) * cells_per_step
    shifts = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), dim=-1).reshape(-1, 3)
    cost = torch.empty((shifts.shape[0], ic, jc, kc), dtype=fix.dtype, device=fix.device)
    tmp = torch.empty_like(f_cells)
    for n, (a, b, d) in enumerate(shifts.tolist()):
        torch.sub(f_cells, m[:, r + a: r + a + ic, r + b: r + b + jc, r + d: r + d + kc], out=tmp)
        torch.sum(tmp.mul_(tmp), 0, out=cost[n])
    return cost.div_(fix.shape[1]), (shifts * cell).to(fix.dtype)


def smooth_cost(cost, passes: int = 1):
    """Box-smooth a correlation volume `(S, Ic, Jc, Kc)` over neighbouring cells (3x3x3, `passes` times)."""
    out = cost[None]
    for _ in range(passes):
        out = box(out, 3)
    return out[0]


def coupled_convex(cost, shifts, coupling, chunk: int = 4096):
    """Coupled-convex optimisation of a correlation volume.

    Args:
        cost: `(S, Ic, Jc, Kc)`; shifts: `(S, 3)` voxels; coupling: increasing alphas (per squared shift
            in units of the search radius, for a cost normalised to mean 1).

    Returns:
        `(1, 3, Ic, Jc, Kc)` displacement in voxels (smoothed).
    """
    import torch

    s, ic, jc, kc = cost.shape
    # cells x shifts, contiguous along the shifts: the argmin runs along memory (2x faster than along dim 0)
    flat = (cost.reshape(s, -1) / cost.mean().clamp_min(1e-12)).T.contiguous()
    radius = float(shifts.abs().max().clamp_min(1.0))
    mesh = shifts / radius  # (S, 3) in units of the search radius

    def field_from(argmin):
        disp = shifts[argmin].T.reshape(1, 3, ic, jc, kc)
        return box(disp, 3)

    disp = field_from(flat.argmin(1))
    mesh_sq = mesh.pow(2).sum(1)  # (S,)
    n_cells = flat.shape[0]
    buf = torch.empty((min(chunk, n_cells), s), dtype=flat.dtype, device=flat.device)
    for alpha in coupling:
        target = (disp.reshape(3, -1) / radius).T.contiguous()  # (N, 3)
        best = torch.empty(n_cells, dtype=torch.long, device=flat.device)
        for start in range(0, n_cells, chunk):
            stop = min(n_cells, start + chunk)
            # |mesh - t|^2 = |mesh|^2 - 2 mesh.t + |t|^2; the last term is constant per cell (argmin unchanged)
            out = buf[:stop - start]
            torch.add(flat[start:stop], mesh_sq, alpha=alpha, out=out)
            out.addmm_(target[start:stop], mesh.T, alpha=-2.0 * alpha)
            best[start:stop] = out.argmin(1)
        disp = field_from(best)
    return disp


def warp_field(field, displacement):
    """Sample a `(1, C, I, J, K)` field at x + displacement (`(1, 3, I, J, K)` voxels)."""
    pos = index_grid(field.shape[2:], field.device, field.dtype) + displacement[0].permute(1, 2, 3, 0)
    return sample(field, pos)


def inverse_consistency(forward, backward, iterations: int = 15):
    """Make two opposite displacement fields `(1, 3, I, J, K)` (voxels) approximately inverse of each other."""
    for _ in range(iterations):
        f_new = 0.5 * (forward - warp_field(backward, forward))
        b_new = 0.5 * (backward - warp_field(forward, backward))
        forward, backward = f_new, b_new
    return forward, backward


def integrate_velocity(velocity, steps: int):
    """Scaling and squaring of a stationary velocity `(1, 3, I, J, K)` (voxels) -> displacement."""
    disp = velocity / (2 ** steps)
    for _ in range(steps):
        disp = disp + warp_field(disp, disp)
    return disp


def cell_to_voxel(field, factor: int, shape):
    """Resample a field given at cell centres (cells of `factor` voxels) onto the voxel grid `shape`."""
    if factor == 1 and tuple(field.shape[2:]) == tuple(shape):
        return field
    pos = (index_grid(shape, field.device, field.dtype) - (factor - 1) / 2.0) / factor
    return sample(field, pos)


def subsample(x, factor: int):
    """Average `(1, C, I, J, K)` over cells of `factor` voxels (cell c is centred on voxel factor*c + (factor-1)/2)."""
    import torch.nn.functional as F

    return x if factor == 1 else F.avg_pool3d(x, factor, stride=factor, ceil_mode=True)


def diffusion_penalty(disp):
    """Mean squared forward differences of a `(1, 3, I, J, K)` field along the three axes."""
    return ((disp[:, :, 1:] - disp[:, :, :-1]).pow(2).mean() + (disp[:, :, :, 1:] - disp[:, :, :, :-1]).pow(2).mean()
            + (disp[..., 1:] - disp[..., :-1]).pow(2).mean())


def diffusion_gradient(disp):
    """Gradient of `diffusion_penalty` with respect to the `(1, 3, I, J, K)` field."""
    import torch

    out = torch.zeros_like(disp)
    for dim in (2, 3, 4):
        n = disp.shape[dim]
        if n < 2:
            continue
        d = disp.narrow(dim, 1, n - 1) - disp.narrow(dim, 0, n - 1)
        d.mul_(2.0 / d.numel())
        out.narrow(dim, 1, n - 1).add_(d)
        out.narrow(dim, 0, n - 1).sub_(d)
    return out


def surrogate_gradient(field, field0, b, h, w_norm, diffusion: float):
    """Gradient of ``sum(w_norm * (r2 + 2 b.delta + delta^T H delta)) + diffusion * diffusion_penalty(field)``
    with delta = field - field0 (`(1, 3, P, Q, R)`), b `(3, P, Q, R)`, H a symmetric 3 x 3 nested list of
    `(P, Q, R)` tensors and w_norm `(P, Q, R)` weights already divided by their sum."""
    import torch

    delta = (field - field0)[0]
    rows = []
    for i in range(3):
        hd = b[i] + h[i][0] * delta[0]
        hd.addcmul_(h[i][1], delta[1]).addcmul_(h[i][2], delta[2])
        rows.append(hd.mul_(w_norm))
    grad = torch.stack(rows)[None].mul_(2.0)
    return grad.add_(diffusion_gradient(field), alpha=diffusion) if diffusion else grad


def convex_adam(fix, mov_warped, mov_sample, weight=None, config: ConvexAdamConfig | None = None, progress=None):
    """Deformable registration on the fixed working grid.

    Args:
        fix: `(1, C, I, J, K)` fixed features.
        mov_warped: `(1, C, I, J, K)` moving features resampled through the affine result onto the fixed grid.
        mov_sample: `f(index (P, Q, R, 3) fixed-working voxels) -> (1, C, P, Q, R)` moving features (averaged
            over `adam_factor` voxels) at the affine image of those points (used by Adam, avoids resampling twice).
        weight: optional `(1, 1, I, J, K)` weights of the similarity (masks).

    Returns:
        (`(1, 3, I, J, K)` displacement in working voxels, info dict, (coarse, factor)): `coarse` is the same
        displacement `(1, 3, P, Q, R)` (working voxels) at its own resolution, node n at working voxel
        ``factor * n + (factor - 1) / 2`` (the dense field is its trilinear interpolation).
    """
    import torch

    cfg = config or ConvexAdamConfig()
    shape = tuple(fix.shape[2:])
    info = {}
    with torch.no_grad():
        cost, shifts = correlation_volume(fix, mov_warped, cfg.cell, cfg.search, cfg.step)
        cost = smooth_cost(cost)
        if progress is not None:
            progress.update("deformable", 0.15, "correlation volume")
        disp_cells = coupled_convex(cost, shifts, cfg.coupling)
        del cost
        if cfg.inverse_consistent:
            cost_b, _ = correlation_volume(mov_warped, fix, cfg.cell, cfg.search, cfg.step)
            back = coupled_convex(smooth_cost(cost_b), shifts, cfg.coupling)
            del cost_b
            # fields at cell resolution: displacement in cells for the consistency warps, back to voxels after
            disp_cells, _ = inverse_consistency(disp_cells / cfg.cell, back / cfg.cell, cfg.ic_iterations)
            disp_cells = disp_cells * cfg.cell
        if progress is not None:
            progress.update("deformable", 0.3, "coupled convex done")
    a = cfg.adam_factor
    init = cell_to_voxel(disp_cells, cfg.cell, shape)
    if cfg.adam_iterations == 0:
        return init, info, (disp_cells, cfg.cell)
    with torch.no_grad():
        fix_a = subsample(fix, a)
        w_a = subsample(weight, a)[0, 0] if weight is not None else torch.ones(fix_a.shape[2:])
        param0 = subsample(init, a) / a  # in Adam-grid voxels
    field, info_adam = instance_optimisation(fix_a, mov_sample, a, param0, w_a, cfg, progress)
    info.update(info_adam)
    with torch.no_grad():
        coarse = field * a
        disp = cell_to_voxel(coarse, a, shape)
    return disp, info, (coarse, a)


def spatial_gradient(x):
    """Central-difference gradient of `(1, C, I, J, K)` along i, j, k -> `(1, C, 3, I, J, K)` (per voxel)."""
    import torch
    import torch.nn.functional as F

    xp = F.pad(x, (1,) * 6, mode="replicate")
    gi = 0.5 * (xp[:, :, 2:, 1:-1, 1:-1] - xp[:, :, :-2, 1:-1, 1:-1])
    gj = 0.5 * (xp[:, :, 1:-1, 2:, 1:-1] - xp[:, :, 1:-1, :-2, 1:-1])
    gk = 0.5 * (xp[:, :, 1:-1, 1:-1, 2:] - xp[:, :, 1:-1, 1:-1, :-2])
    return torch.stack([gi, gj, gk], dim=2)


def _field(param, cfg: ConvexAdamConfig):
    field = smooth_field(param, cfg.smooth_passes)
    return integrate_velocity(field, cfg.squaring_steps) if cfg.diffeomorphic else field


def instance_optimisation(fix_a, mov_sample, factor: int, param0, weight, cfg: ConvexAdamConfig, progress=None):
    """Adam on a dense field (Adam-grid voxels) minimising feature SSD + diffusion.

    The moving features are re-sampled every `cfg.relinearise` steps; in between, the SSD is its second-order
    Taylor expansion around the last sample (Gauss-Newton surrogate with the symmetric gradient
    0.5 (grad F + grad M)), which keeps each Adam step cheap on CPU. Returns (`(1, 3, P, Q, R)` field, info).
    """
    import torch

    centres = index_grid(fix_a.shape[2:], fix_a.device, fix_a.dtype) * factor + (factor - 1) / 2.0
    n_ch = fix_a.shape[1]
    grad_f = spatial_gradient(fix_a)
    wsum = weight.sum().clamp_min(1e-6)
    param = param0.clone().requires_grad_(cfg.diffeomorphic)
    opt = Adam([param], lr=cfg.adam_lr)
    n_inner = max(1, cfg.relinearise)
    info = {}
    step = 0
    while step < cfg.adam_iterations:
        with torch.no_grad():
            field0 = _field(param, cfg)
            moved = mov_sample(centres + (field0[0] * factor).permute(1, 2, 3, 0))
            resid = moved - fix_a  # (1, C, P, Q, R)
            g = 0.5 * (grad_f + spatial_gradient(moved))[0]  # (C, 3, P, Q, R)
            b = (resid[0, :, None] * g).sum(0)  # (3, P, Q, R)
            h = [[None] * 3 for _ in range(3)]  # symmetric 3 x 3 of (P, Q, R)
            for i in range(3):
                for j in range(i, 3):
                    h[i][j] = h[j][i] = (g[:, i] * g[:, j]).sum(0)
            r2 = resid.pow(2).sum(1)[0]
            sim_now = float((r2 * weight).sum() / wsum)
            if step == 0:
                info["ssd_first"] = sim_now / n_ch
            w_norm = weight / wsum
        for _ in range(min(n_inner, cfg.adam_iterations - step)):
            opt.zero_grad()
            # the surrogate is quadratic in the field: its gradient is written out (much cheaper on CPU than
            # autograd through the 3 x 3 products)
            if cfg.diffeomorphic:  # autograd back-propagates through the smoothing and the integration
                field = _field(param, cfg)
                with torch.no_grad():
                    grad = surrogate_gradient(field, field0, b, h, w_norm, cfg.diffusion)
                # (field * grad).sum() has exactly this gradient; a scalar backward also spares autograd's
                # explicit-gradient check, whose first call imports sympy (~0.4 s)
                (field * grad).sum().backward()
            else:  # field = S(param) with S the replicate-padded box smoothing, a symmetric linear map: d/dparam = S(.)
                with torch.no_grad():
                    field = smooth_field(param, cfg.smooth_passes)
                    grad = surrogate_gradient(field, field0, b, h, w_norm, cfg.diffusion)
                    param.grad = smooth_field(grad, cfg.smooth_passes)
            opt.step()
            step += 1
        if progress is not None:
            progress.update("deformable", 0.3 + 0.65 * step / cfg.adam_iterations, f"ssd {sim_now / n_ch:.4f}")
    with torch.no_grad():
        field = _field(param, cfg)
        info["ssd_last_linearised"] = sim_now / n_ch
    return field, info
