"""Intensity check of the linear stage: mutual information (MI) decides whether the MIND-SSC result is kept.

MIND-SSC compares local self-similarity patterns, which assumes that both images show edges at the same places.
A smooth, low-resolution functional image (PET/SPECT-like uptake, grey > white) against a T1 breaks that
assumption: on the stand-in PET case of the benchmark the MIND objective's minimum lies ~10 mm from the truth
(started at the best affine, it drifts there), while MI, which only assumes that one intensity predicts the other,
is maximal within ~0.7 mm of the best affine. So beside the MIND linear stage, a short linear stage on MI
(Parzen histograms, 4 mm, from the same initial alignment) runs, and the MIND result is replaced by the MI result
when its MI is below `MI_REJECT_RATIO` of the MI result's: the pair is then flagged `mind_inconsistent`.
MI alone is less precise than MIND on MR/CT pairs (affine-only TRE 0.1-0.8 mm worse on the dev cases), which is
why it is a check and a fallback rather than the default.

Measured (2026-12-03, MI of the MIND result / MI of the MI result): 0.95-0.98 on the 4 dev cases and the EPI-like,
anisotropic and flipped stand-ins (MIND kept), 0.68 on the PET-like stand-in, 0.70 on the tests' smooth uptake
phantom and 0.52 on their 1 mm shifted phantom (MI result used; MIND was 3.0 mm off there, MI 0.8 mm); on the
CT-like stand-ins 0.91 T1 -> CT-like (MIND kept) and 0.84 CT-like -> T1 (MI result used: affine 3.24 mm vs MIND's
3.95 mm, after the deformable stage 2.35 vs 2.45 mm). The engine
also drops a deformable result that lowers the MI of the linear result by more than 3 % (`deformable_lowers_mi`):
on the PET-like stand-in MIND's deformable stage lowers MI (0.554 -> 0.496) and TRE (3.39 -> 3.99 mm); on the 7
other cases it raises MI by 9-21 % (on the CT-like stand-ins by 2.7 % and 28 %).
"""

from __future__ import annotations

import numpy as np

#: The MIND result is replaced by the MI stage's when MI(MIND result) < this x MI(MI result).
MI_REJECT_RATIO = 0.85
#: A deformable result is dropped when MI(deformable) < this x MI(linear result). Measured MI changes through the
#: deformable stage: -10.5 % on the PET-like stand-in, -0.9 % on the tests' 1 mm shifted phantom (a pure
#: translation, nothing left to deform), +9 to +21 % on the 7 other benchmark cases.
MI_DEFORMABLE_KEEP_RATIO = 0.97


def deformable_lowers_mi(mi_linear_result: float, mi_deformable: float) -> bool:
    """True when the deformable stage lowered MI by more than `1 - MI_DEFORMABLE_KEEP_RATIO` (relative)."""
    return mi_deformable < MI_DEFORMABLE_KEEP_RATIO * mi_linear_result


def mi_linear(fix_img, mov_img, weight, fgrid, mgrid, init_mat: np.ndarray, centre: np.ndarray, mode: str,
              config) -> tuple[np.ndarray, dict]:
    """Rigid/affine on minus the MI of the intensities, on both working images box-averaged to twice the working
    spacing (`fix_img` / `mov_img` `(I, J, K)` numpy in [0, 1] on `fgrid` / `mgrid`, `weight` `(1, 1, I, J, K)`
    tensor on `fgrid`, `config` a `linear.LinearConfig` with `similarity="mi"`).

    Returns (4x4 RAS fixed -> moving, `linear.optimise_linear`'s history)."""
    import torch
    import torch.nn.functional as F

    from multimodalgen.registration.linear import optimise_linear, pooled_affine

    ft = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None, None].to(weight.device)  # noqa: E731
    fix4, mov4 = (F.avg_pool3d(ft(a), 2, stride=2, ceil_mode=True) for a in (fix_img, mov_img))
    weight4 = F.avg_pool3d(weight, 2, stride=2, ceil_mode=True)
    return optimise_linear(fix4, pooled_affine(fgrid.affine, 2), mov4, pooled_affine(mgrid.affine, 2), init_mat,
                           centre, mode, weight4, config)


def check_linear(mind_affine: np.ndarray, score, run_mi) -> tuple[np.ndarray, dict]:
    """Keep the MIND linear result or replace it by the MI stage's (see the module docstring).

    Args:
        mind_affine: 4x4 RAS fixed -> moving, the MIND linear result.
        score: `affine -> MI` (`similarity.MutualInformationScore`); run_mi: `() -> (4x4 affine, iterations)`.

    Returns:
        (the chosen 4x4, a report dict: `mi_mind`, `mi_stage`, `ratio`, `mind_inconsistent`, `decision`).
    """
    mi_affine, iterations = run_mi()
    s_mind, s_mi = score(mind_affine), score(mi_affine)
    ratio = s_mind / s_mi if s_mi > 0 else 1.0
    info = {"mi_mind": s_mind, "mi_stage": s_mi, "mi_stage_iterations": int(iterations), "ratio": round(ratio, 4),
            "mind_inconsistent": bool(ratio < MI_REJECT_RATIO)}
    if info["mind_inconsistent"]:
        info["decision"] = (f"MI stage result used: the MIND result's MI is {ratio:.2f} of it (< {MI_REJECT_RATIO}); "
                            "MIND features do not correspond for this pair")
        return mi_affine, info
    info["decision"] = f"MIND result kept: its MI is {ratio:.2f} of the MI stage's (>= {MI_REJECT_RATIO})"
    return mind_affine, info
