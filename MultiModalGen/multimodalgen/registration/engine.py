"""Registration at array and Volume level: initial alignment -> rigid -> affine -> ConvexAdam deformable.

`register_volumes(fixed, moving, ...)` returns a `RegistrationResult` (see `contract.py`: fixed RAS points ->
moving RAS points, affine + displacement on the fixed grid). `register_arrays` is the same on plain arrays with
voxel -> RAS affines. Nothing here reads or writes files.
"""

from __future__ import annotations

import time

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.progress import Progress
from multimodalgen.registration.contract import INITS, MODES, RegistrationResult
from multimodalgen.registration.grid import (choose_working_grid, foreground_mask, moving_grid, prepare_image,
                                             resample_mask)
from multimodalgen.registration.linear import pooled_affine
from multimodalgen.registration.presets import RegistrationConfig, preset_config
from multimodalgen.volume import Volume, check_finite, check_not_constant


def _validate(fixed: Volume, moving: Volume, mode: str, init: str) -> None:
    if mode not in MODES:
        raise UserInputError("unknown registration mode", expected=" | ".join(MODES), got=repr(mode))
    if init not in INITS:
        raise UserInputError("unknown initialisation", expected=" | ".join(INITS), got=repr(init))
    for vol, what in ((fixed, "fixed image"), (moving, "moving image")):
        if vol.array.ndim != 3:
            raise UserInputError(f"the {what} has {vol.n_channels} channels", expected="a scalar 3D image",
                                 fix="extract one channel (multimodalgen convert --component N)")
        if min(vol.shape3d) < 4:
            raise UserInputError(f"the {what} is too thin to register in 3D",
                                 expected="at least 4 voxels along every axis", got=f"shape {vol.shape3d}",
                                 fix="give a 3D volume (2D slices or single-slice images cannot be registered)")
        check_finite(vol, what)
        check_not_constant(vol, what)


def _check_mask(mask: Volume | None, what: str) -> None:
    if mask is not None and not np.any(np.asarray(mask.array) > 0):
        raise UserInputError(f"the {what} is empty", expected="a mask with at least one non-zero voxel",
                             fix=f"check the {what} file, or leave it out")


def _world_overlap(fixed: Volume, moving: Volume) -> float:
    """Fraction of the fixed field of view's sample points inside the moving field of view (headers only)."""
    from multimodalgen.volume import grid_world_coordinates

    step = [max(1, n // 12) for n in fixed.shape3d]
    pts = grid_world_coordinates(fixed.shape3d, fixed.affine)[:, ::step[0], ::step[1], ::step[2]].reshape(3, -1).T
    idx = (pts - moving.affine[:3, 3]) @ np.linalg.inv(moving.affine[:3, :3]).T
    inside = np.all((idx > -0.5) & (idx < np.asarray(moving.shape3d) - 0.5), axis=1)
    return float(inside.mean())


def identity_result(fixed: Volume, report: dict) -> RegistrationResult:
    return RegistrationResult(np.eye(4), None, fixed.shape3d, fixed.affine.copy(), fixed.shape3d,
                              fixed.affine.copy(), report)


def register_volumes(fixed: Volume, moving: Volume, *, mode: str = "deformable", preset: str = "fast",
                     fixed_mask: Volume | None = None, moving_mask: Volume | None = None,
                     moving_labels: Volume | None = None, init: str = "moments", device="cpu",
                     progress=None, config: RegistrationConfig | None = None,
                     diffeomorphic: bool | None = None, inverse_consistent: bool | None = None,
                     features: str | None = None, encoder: str | None = None) -> RegistrationResult:
    """Register `moving` to `fixed` (any grids, orientations, resolutions).

    Args:
        fixed, moving: scalar Volumes (RAS affines).
        mode: "rigid", "affine" or "deformable" (rigid -> affine -> ConvexAdam).
        preset: "fast" or "accurate" (see `presets.py`); `config` overrides it entirely.
        fixed_mask, moving_mask: optional masks on their image's grid (non-zero = use); the fixed mask limits the
            similarity to its voxels, the moving mask blanks the moving image outside it.
        moving_labels: not used for the optimisation (accepted so that callers can pass the same arguments as
            `register_files`, which warps them).
        init: "moments" (centres of mass), "centers" (field-of-view centres) or "none" (header geometry).
        device: torch device or name.
        features, encoder: "mind" (default) or "mind+encoder" with the encoder NAME[:GROUP] (`encoder.channels`,
            e.g. "encoder-v4:correspondence"; None = the default encoder, all channels).

    Returns:
        RegistrationResult with the displacement on the fixed grid (RAS mm) and a report.
    """
    import torch

    progress = progress or Progress.null()
    t_start = time.perf_counter()
    mode, preset, init = mode or "deformable", preset or "fast", init or "moments"
    _validate(fixed, moving, mode, init)
    _check_mask(fixed_mask, "fixed mask")
    _check_mask(moving_mask, "moving mask")
    cfg = config or preset_config(preset, diffeomorphic=diffeomorphic, inverse_consistent=inverse_consistent,
                                  features=features, encoder=encoder)
    device = torch.device(device) if not isinstance(device, torch.device) else device
    report: dict = {"mode": mode, "preset": preset, "init": init, "device": str(device), "stages": [],
                    "config": cfg.to_dict()}
    timings: dict = {}
    report["timings_s"] = timings

    overlap = _world_overlap(fixed, moving)
    report["header_fov_overlap"] = round(overlap, 4)
    if overlap == 0.0 and init == "none":
        raise UserInputError("the fixed and moving fields of view do not overlap in world coordinates",
                             expected="overlapping images, or an initialisation that brings them together",
                             got="--init none", fix="use --init moments (centres of mass) or --init centers")
    if (fixed.shape3d == moving.shape3d and np.allclose(fixed.affine, moving.affine, atol=1e-4)
            and np.array_equal(fixed.array, moving.array)):
        report["stages"].append({"name": "identical-inputs", "note": "the images are identical: identity"})
        timings["total"] = round(time.perf_counter() - t_start, 3)
        report["similarity_before"] = report["similarity_after"] = 0.0
        progress.update("register", 1.0, "identical images")
        return identity_result(fixed, report)

    # -- working grids and images ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    if fixed_mask is not None:
        fmask_native = resample_mask(fixed_mask, _native_grid(fixed)) if not _same(fixed_mask, fixed) \
            else np.asarray(fixed_mask.array) > 0
    else:
        from multimodalgen.intensity import normalize

        fix_norm_native = normalize(fixed.array, fixed.modality)
        fmask_native = foreground_mask(fix_norm_native)
    fgrid = choose_working_grid(fixed, fmask_native, cfg.spacing_mm)
    mgrid = moving_grid(moving, fgrid.spacing, fgrid.affine[:3, :3] / fgrid.spacing)
    fix_img = prepare_image(fixed, fgrid)
    mov_img = prepare_image(moving, mgrid)
    if moving_mask is not None:
        mov_img = mov_img * resample_mask(moving_mask, mgrid)
    if fixed_mask is not None:
        fweight = resample_mask(fixed_mask, fgrid).astype(np.float32)
        if not fweight.any():
            raise UserInputError("the fixed mask does not cover the working grid", expected="a mask inside the image",
                                 fix="check that the mask belongs to the fixed image")
    else:
        from multimodalgen.registration.grid import dilate

        fweight = dilate(foreground_mask(fix_img), iterations=2).astype(np.float32)
    report["working_grid"] = fgrid.describe()
    report["moving_working_grid"] = mgrid.describe()
    timings["prepare"] = round(time.perf_counter() - t0, 3)
    progress.update("register", 0.05, f"working grid {fgrid.shape} at {fgrid.spacing:.2f} mm")

    # -- features ------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    from multimodalgen.registration.features import compute_features, load_encoder_if_shipped

    encoder = load_encoder_if_shipped(device, cfg.encoder) if cfg.features in ("auto", "mind+encoder") else None
    if cfg.features == "mind+encoder" and encoder is None:
        raise UserInputError("encoder features were requested but no encoder weights are shipped",
                             expected="a shipped encoder (multimodalgen models list)", fix="use features 'mind'")
    kind = "mind+encoder" if encoder is not None else "mind"
    ft = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None, None].to(device)  # noqa: E731
    fix_feat = compute_features(ft(fix_img), kind=kind, encoder=encoder, spacing_mm=fgrid.spacing)
    weight = ft(fweight)
    report["features"] = {"kind": kind, "channels": int(fix_feat.shape[1])}
    if encoder is not None:
        report["features"]["encoder"] = cfg.encoder or "default"
        report["features"]["encoder_channels"] = list(encoder[1])
    timings["features"] = round(time.perf_counter() - t0, 3)
    progress.check_cancelled()

    # -- initial + linear --------------------------------------------------------------------------------------
    from multimodalgen.registration.initial import initial_transform
    from multimodalgen.registration.similarity import Similarity4mm

    t0 = time.perf_counter()
    mov_t = ft(mov_img)
    feats = lambda img: compute_features(img, kind=kind, encoder=encoder, spacing_mm=fgrid.spacing)  # noqa: E731
    init_mat, centre = initial_transform(init, (fix_img, fgrid.affine, fweight > 0), (mov_img, mgrid.affine, None))
    sim4 = Similarity4mm(fix_img, weight, mov_t, mgrid, fgrid, feats, _warp_image)
    report["similarity_before"] = sim4(np.eye(4))
    overlap_after_init = _overlap_fraction(fgrid, mgrid, init_mat, fweight)
    if overlap_after_init < 0.05:
        raise UserInputError("the images do not overlap after the initial alignment",
                             expected="fields of view that share anatomy",
                             got=f"{overlap_after_init:.0%} of the fixed foreground inside the moving image "
                                 f"with --init {init}",
                             fix="try --init centers or --init moments, or check that the images show the same region")
    report["stages"].append({"name": "initial", "method": init, "translation_mm": np.round(init_mat[:3, 3], 3).tolist()})
    linear_mode = "rigid" if mode == "rigid" else "affine"
    affine, iterations = _linear_stage(fix_img, mov_img, fix_feat, weight, fgrid, mgrid, init_mat, centre,
                                       linear_mode, mode == "deformable", cfg, feats, progress)
    check = None
    if cfg.mi_check:
        from multimodalgen.registration.mi_check import check_linear, deformable_lowers_mi, mi_linear
        from multimodalgen.registration.similarity import MutualInformationScore

        mi_score = MutualInformationScore(fix_img, weight, mov_t, mgrid, fgrid)

        def run_mi():
            out, hist = mi_linear(fix_img, mov_img, weight, fgrid, mgrid, init_mat, centre, linear_mode, cfg.linear_mi)
            return out, hist["iterations"]

        affine, check = check_linear(affine, mi_score, run_mi)
        report["mi_check"] = check
        if check["mind_inconsistent"]:
            report.setdefault("warnings", []).append(
                "the two images do not show the same edges (e.g. a smooth functional image against an anatomical "
                f"one): the linear stage used mutual information instead of MIND features ({check['decision']}); "
                "check the alignment in overlay.png")
    warped_feat = feats(_warp_image(mov_t, mgrid, fgrid, affine))
    timings["linear"] = round(time.perf_counter() - t0, 3)
    sim_lin = sim4(affine)
    report["stages"].append({"name": linear_mode, "iterations": iterations,
                             "similarity_after": sim_lin, "seconds": timings["linear"]})

    displacement = None
    if mode == "deformable":
        t0 = time.perf_counter()
        disp_vox, info, (coarse, factor) = _deformable(fix_feat, warped_feat, weight, cfg, progress)
        lin = torch.as_tensor(fgrid.affine[:3, :3], dtype=disp_vox.dtype)
        timings["deformable"] = round(time.perf_counter() - t0, 3)
        sim_def = sim4(affine, disp_vox)
        stage = {"name": "deformable", "method": "convexadam", "similarity_after": sim_def,
                 "seconds": timings["deformable"], **info}
        report["stages"].append(stage)
        if check is not None:  # a deformable result that lowers MI is not used (the PET-like case; mi_check.py)
            # the linear result's MI is the check's score of the affine it chose
            stage["mi_before"] = check["mi_stage"] if check["mind_inconsistent"] else check["mi_mind"]
            stage["mi_after"] = mi_score(affine, disp_vox)
            if deformable_lowers_mi(stage["mi_before"], stage["mi_after"]):
                stage["rejected"] = "it lowered the mutual information of the linear result: linear result kept"
                report["mode_delivered"] = linear_mode
                report.setdefault("warnings", []).append(
                    "the deformable stage lowered the mutual information of the images and was not used: the result "
                    "is the linear (affine) transform only")
    if mode == "deformable" and "rejected" not in report["stages"][-1]:
        t0 = time.perf_counter()
        field_shape, field_affine, why, on_nodes = _field_grid(fixed, fgrid, factor)
        if on_nodes:  # the deformable stage's own nodes: their values, no re-interpolation
            node_mm = torch.einsum("ab,bijk->aijk", lin, coarse[0])  # RAS mm on the node grid
            displacement = _to_grid(node_mm, pooled_affine(fgrid.affine, factor), field_shape, field_affine)
        else:
            disp_mm_work = torch.einsum("ab,bijk->aijk", lin, disp_vox[0])  # RAS mm on the working grid
            displacement = _to_grid(disp_mm_work, fgrid.affine, field_shape, field_affine)
        report["field_grid"] = {"shape": list(field_shape), "spacing_mm": np.round(
            np.linalg.norm(field_affine[:3, :3], axis=0), 4).tolist(), "reason": why}
        timings["field_to_output_grid"] = round(time.perf_counter() - t0, 3)
        report["similarity_after"] = report["stages"][-1]["similarity_after"]
    else:
        report["similarity_after"] = sim_lin
    report["similarity"] = ("mean squared difference between the fixed image's features and the features of the "
                            "moving image resampled into the fixed working grid, at 4 mm, over the fixed foreground "
                            "(lower is better)")
    if displacement is None:
        field_shape, field_affine = fixed.shape3d, fixed.affine.copy()
    result = RegistrationResult(affine, displacement, tuple(field_shape), field_affine, fixed.shape3d,
                                fixed.affine.copy(), report)
    timings["total"] = round(time.perf_counter() - t_start, 3)
    progress.update("register", 1.0, "done")
    return result


def _same(a: Volume, b: Volume) -> bool:
    from multimodalgen.volume import same_grid

    return same_grid(a, b)


def _native_grid(volume: Volume):
    from multimodalgen.registration.grid import WorkingGrid

    return WorkingGrid(volume.shape3d, volume.affine, float(volume.spacing.min()), "native")


def _overlap_fraction(fgrid, mgrid, transform: np.ndarray, fweight: np.ndarray) -> float:
    """Fraction of fixed foreground working voxels whose transform lands inside the moving working grid."""
    idx = np.argwhere(fweight > 0)[:: max(1, int(np.count_nonzero(fweight)) // 20000)]
    if idx.size == 0:
        return 0.0
    mat = np.linalg.inv(mgrid.affine) @ transform @ fgrid.affine
    m = idx @ mat[:3, :3].T + mat[:3, 3]
    inside = np.all((m > -0.5) & (m < np.asarray(mgrid.shape) - 0.5), axis=1)
    return float(inside.mean())


def _linear_stage(fix_img, mov_img, fix_feat, weight, fgrid, mgrid, init_mat, centre, linear_mode: str,
                  deformable_follows: bool, cfg: RegistrationConfig, feats, progress):
    """Rigid/affine estimation in rounds; returns (4x4 RAS fixed -> moving, total iterations).

    MIND (like most local descriptors) is tied to the voxel axes, so features of a rotated moving image are biased
    towards "no rotation". Round 0 compares features computed on each image's own grid (4 mm); the following
    rounds resample the moving *image* through the current estimate onto the fixed grid, recompute its
    features there and estimate a small correction D (T <- T o D): at 4 mm, then at the working resolution
    (`cfg.linear_fine_rounds`, or `cfg.linear_fine_rounds_deformable` when a deformable stage follows: none in
    `fast`, where the deformable stage absorbs the residual).
    """
    import torch.nn.functional as F

    from multimodalgen.registration.linear import optimise_linear

    ft = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None, None].to(fix_feat.device)  # noqa: E731
    import torch

    fix4, mov4 = (F.avg_pool3d(ft(a), 2, stride=2, ceil_mode=True) for a in (fix_img, mov_img))
    f4, m4 = pooled_affine(fgrid.affine, 2), pooled_affine(mgrid.affine, 2)
    grid4 = type(fgrid)(tuple(fix4.shape[2:]), f4, fgrid.spacing * 2, "4 mm")
    weight4 = F.avg_pool3d(weight, 2, stride=2, ceil_mode=True)
    fix4_feat = feats(fix4)
    sub = progress.sub("linear", 0.05, 0.45) if hasattr(progress, "sub") else None
    affine, hist = optimise_linear(fix4_feat, f4, feats(mov4), m4, init_mat, centre, linear_mode, weight4,
                                   cfg.linear, sub)
    iterations = hist["iterations"]
    mov_t = ft(mov_img)
    for _ in range(cfg.linear_rounds):
        progress.check_cancelled()
        warped = feats(F.avg_pool3d(_warp_image(mov_t, mgrid, fgrid, affine), 2, stride=2, ceil_mode=True))
        correction, hist = optimise_linear(fix4_feat, f4, warped, f4, np.eye(4), centre, linear_mode, weight4,
                                           cfg.linear_refine, None)
        affine = affine @ correction
        iterations += hist["iterations"]
    for _ in range(cfg.linear_fine_rounds_deformable if deformable_follows else cfg.linear_fine_rounds):
        progress.check_cancelled()
        warped = feats(_warp_image(mov_t, mgrid, fgrid, affine))
        correction, hist = optimise_linear(fix_feat, fgrid.affine, warped, fgrid.affine, np.eye(4), centre,
                                           linear_mode, weight, cfg.linear_fine, None)
        affine = affine @ correction
        iterations += hist["iterations"]
    del grid4
    return affine, iterations


def _warp_image(mov_t, mgrid, fgrid, affine: np.ndarray, disp_vox=None):
    """The moving working image `(1, 1, i, j, k)` resampled onto the fixed working grid through
    ``T(x) = affine(x + W d(x))`` (d: optional `(1, 3, I, J, K)` displacement in fixed working voxels)."""
    import torch

    from multimodalgen.registration.sampling import sample_affine

    to_mov = np.linalg.inv(mgrid.affine) @ affine @ fgrid.affine
    with torch.no_grad():
        return sample_affine(mov_t, to_mov, fgrid.shape, padding="zeros", disp=disp_vox)


def _deformable(fix_feat, warped_feat, weight, cfg: RegistrationConfig, progress):
    """ConvexAdam on the fixed working grid between the fixed features and the features of the affinely warped
    moving image; returns the residual displacement `(1, 3, I, J, K)` in working voxels, an info dict and
    (the same field on its nodes, their spacing in working voxels) (see `convexadam.convex_adam`)."""
    import torch.nn.functional as F

    from multimodalgen.registration.convexadam import convex_adam
    from multimodalgen.registration.sampling import sample

    a = cfg.deformable.adam_factor
    pooled = F.avg_pool3d(warped_feat, a, stride=a, ceil_mode=True) if a > 1 else warped_feat

    def mov_sample(pos):  # working voxel v -> pooled index (v - (a - 1) / 2) / a
        return sample(pooled, (pos - (a - 1) / 2.0) / a)

    sub = progress.sub("deformable", 0.45, 0.95) if hasattr(progress, "sub") else None
    return convex_adam(fix_feat, warped_feat, mov_sample, weight, cfg.deformable, sub)


def _field_grid(fixed: Volume, fgrid, factor: int = 1) -> tuple[tuple[int, int, int], np.ndarray, str, bool]:
    """Grid of the stored displacement: (shape, voxel -> RAS affine, reason, on_nodes).

    The deformable stage's field is the trilinear interpolation of its nodes (every `factor` working voxels:
    4 mm in both presets), so unless the fixed grid is as coarse as those nodes the field is stored on the node
    grid itself, extended by whole nodes over the fixed field of view (``on_nodes`` True: the stored values are
    the nodes' own, T is interpolated trilinearly between them as ITK does, and nothing is lost). This keeps
    transform.h5 / inverse_transform.h5 small and the inverse and Jacobian cheap (a 2 mm fixed grid: 8x fewer
    values; a 1 mm head: 64x). A fixed grid at least as coarse as the nodes stores the field on the fixed grid.
    """

    factor = max(1, int(factor))
    if float(fixed.spacing.min()) >= 0.9 * fgrid.spacing * factor:
        return fixed.shape3d, fixed.affine.copy(), "the fixed grid", False
    nodes = pooled_affine(fgrid.affine, factor)
    corners = np.array([[a, b, c, 1.0] for a in (0, fixed.shape3d[0] - 1) for b in (0, fixed.shape3d[1] - 1)
                        for c in (0, fixed.shape3d[2] - 1)]) @ fixed.affine.T
    idx = (corners @ np.linalg.inv(nodes).T)[:, :3]  # fixed voxel-centre corners in node indices
    lo, hi = np.floor(idx.min(0) + 1e-6), np.ceil(idx.max(0) - 1e-6)
    shift = np.eye(4)
    shift[:3, 3] = lo
    shape = tuple(int(n) for n in (hi - lo + 1))
    spacing = fgrid.spacing * factor
    return shape, nodes @ shift, (f"the deformable stage's {spacing:g} mm nodes over the fixed field of view (the "
                                  "fixed grid is finer than the nodes)"), True


def _to_grid(disp_mm_work, work_affine: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
    """Resample a `(3, i, j, k)` working-grid field (RAS mm) onto a target grid -> float32 `(3, I, J, K)`."""
    import torch

    from multimodalgen.registration.sampling import apply_matrix, index_grid, sample

    mat = np.linalg.inv(work_affine) @ affine
    out = np.empty((3,) + tuple(shape), np.float32)
    field = disp_mm_work[None].float()
    with torch.no_grad():
        for start in range(0, shape[0], 32):  # slabs bound the memory of the sampling grid
            stop = min(shape[0], start + 32)
            idx = index_grid((stop - start,) + tuple(shape[1:]))
            idx[..., 0] += start
            out[:, start:stop] = sample(field, apply_matrix(mat, idx))[0].numpy()
    return out


def register_arrays(fixed: np.ndarray, fixed_affine: np.ndarray, moving: np.ndarray, moving_affine: np.ndarray,
                    **kwargs) -> RegistrationResult:
    """`register_volumes` on `(I, J, K)` arrays with voxel -> RAS affines (same keyword arguments)."""
    return register_volumes(Volume(fixed, fixed_affine), Volume(moving, moving_affine), **kwargs)
