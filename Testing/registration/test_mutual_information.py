"""Mutual information (Parzen histograms) and the linear stage's MI check on a smooth uptake phantom vs a T1-like
phantom (the PET/SPECT-like case where MIND-SSC features do not correspond)."""

from __future__ import annotations

import numpy as np
import pytest
from registration_helpers import interior_points, uptake_pair


def _samples(n=4000, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=torch.float64)
    return x, x[torch.randperm(n, generator=g)]


def test_mi_of_dependent_samples_exceeds_independent_ones():
    from multimodalgen.registration.mutual_information import mutual_information

    x, shuffled = _samples()
    dependent = float(mutual_information(x, 1.0 - x ** 2))  # non-linear, inverted contrast: still dependent
    independent = float(mutual_information(x, shuffled))
    assert dependent > 1.5, dependent
    assert 0.0 <= independent < 0.1, independent
    nmi_dep = float(mutual_information(x, 1.0 - x ** 2, normalised=True))
    nmi_ind = float(mutual_information(x, shuffled, normalised=True))
    assert 1.0 <= nmi_ind < nmi_dep <= 2.0, (nmi_ind, nmi_dep)


def test_mi_weights_and_gradient():
    import torch

    from multimodalgen.registration.mutual_information import mutual_information

    x, shuffled = _samples()
    half = torch.zeros_like(x)
    half[: len(x) // 2] = 1.0
    mixed = torch.cat([x[: len(x) // 2], shuffled[len(x) // 2:]])  # dependent only where the weight is 1
    assert float(mutual_information(x, mixed, half)) > float(mutual_information(x, mixed)) + 0.5
    mov = (0.8 * x + 0.1).clone().requires_grad_(True)
    mutual_information(x, mov).backward()
    assert torch.isfinite(mov.grad).all() and float(mov.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match=r"two \(N,\) samples"):
        mutual_information(x, x[:10])


def test_linear_config_rejects_an_unknown_similarity():
    import torch

    from multimodalgen.registration.linear import LinearConfig, optimise_linear

    vol = torch.zeros(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="'mind' or 'mi'"):
        optimise_linear(vol, np.eye(4), vol, np.eye(4), np.eye(4), np.zeros(3),
                        config=LinearConfig(similarity="ncc"))


def test_check_keeps_mind_unless_far_below_the_mi_optimum():
    from multimodalgen.registration.mi_check import MI_REJECT_RATIO, check_linear

    mind, mi = np.diag([1.0, 1.0, 1.0, 1.0]), np.diag([2.0, 2.0, 2.0, 1.0])
    values = {1.0: 0.50, 2.0: 0.52}
    score = lambda a: values[float(a[0, 0])]  # noqa: E731
    chosen, info = check_linear(mind, score, lambda: (mi, 40))
    assert chosen is mind and not info["mind_inconsistent"] and info["mi_stage_iterations"] == 40
    values[1.0] = 0.52 * MI_REJECT_RATIO * 0.99
    chosen, info = check_linear(mind, score, lambda: (mi, 40))
    assert chosen is mi and info["mind_inconsistent"] and info["ratio"] < MI_REJECT_RATIO
    assert "MI stage result used" in info["decision"]


def _errors(result, t_true):
    pts = interior_points()
    return np.linalg.norm(result.transform_points(pts) - (pts @ t_true[:3, :3].T + t_true[:3, 3]), axis=1)


def test_mi_score_is_highest_near_the_truth():
    import torch

    from multimodalgen.registration.grid import choose_working_grid, foreground_mask, moving_grid, prepare_image
    from multimodalgen.registration.similarity import MutualInformationScore

    fixed, moving, t_true = uptake_pair()
    fgrid = choose_working_grid(fixed, None, 2.0, crop=False)
    mgrid = moving_grid(moving, 2.0, np.eye(3))
    fix_img, mov_img = prepare_image(fixed, fgrid), prepare_image(moving, mgrid)
    weight = torch.from_numpy(foreground_mask(fix_img).astype(np.float32))[None, None]
    score = MutualInformationScore(fix_img, weight, torch.from_numpy(mov_img)[None, None], mgrid, fgrid)
    shifted = t_true.copy()
    shifted[:3, 3] += [6.0, 0.0, 0.0]
    assert score(t_true) > score(shifted) + 0.05 and score(t_true) > score(np.eye(4)) + 0.05


def test_uptake_image_recovered_through_the_mi_stage():
    """MIND alone lands ~5.5 mm off on this pair (2026-12-03); the MI check replaces its result (MI ratio ~0.70)."""
    from multimodalgen.registration import register_volumes

    fixed, moving, t_true = uptake_pair()
    result = register_volumes(fixed, moving, mode="affine")
    check = result.report["mi_check"]
    assert check["mind_inconsistent"] and check["ratio"] < 0.85, check
    err = _errors(result, t_true)
    assert err.mean() < 2.5, f"mean error {err.mean():.2f} mm (max {err.max():.2f})"


def test_deformable_result_that_lowers_mi_is_dropped():
    from multimodalgen.registration import register_volumes

    fixed, moving, t_true = uptake_pair()
    result = register_volumes(fixed, moving, mode="deformable")
    stage = result.report["stages"][-1]
    assert stage["name"] == "deformable" and stage["mi_after"] < stage["mi_before"], stage
    assert "rejected" in stage and result.displacement is None
    assert _errors(result, t_true).mean() < 2.5
    warnings = result.report["warnings"]          # printed as `warning:` lines by the CLI: never a silent change
    assert any("mutual information instead of MIND" in w for w in warnings)
    assert any("linear (affine) transform only" in w for w in warnings)
    from multimodalgen.verbs.messages import registration_mode

    assert registration_mode(result.report) == "affine (deformable stage not used)"      # summary line, overlay title


def test_mind_kept_on_an_mr_pair(affine_pair):
    from multimodalgen.registration import register_volumes

    fixed, moving, t_true = affine_pair
    result = register_volumes(fixed, moving, mode="deformable")
    check = result.report["mi_check"]
    assert not check["mind_inconsistent"] and check["ratio"] >= 0.85, check
    assert result.displacement is not None and "rejected" not in result.report["stages"][-1]
    assert "warnings" not in result.report
