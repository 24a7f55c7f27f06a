"""The hand-written fast kernels of the registration equal the straightforward versions they replace."""

from __future__ import annotations

import numpy as np
import torch

from multimodalgen.features.mind import box_filter
from multimodalgen.registration.adam import Adam
from multimodalgen.registration.convexadam import coupled_convex, diffusion_penalty, surrogate_gradient
from multimodalgen.registration.sampling import box3


def test_adam_matches_torch_optim_adam():
    torch.manual_seed(0)
    x = torch.randn(6, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    ours, ref = Adam([{"params": [x], "lr": 0.1}]), torch.optim.Adam([y], lr=0.1)
    for step in range(40):
        for opt, p in ((ours, x), (ref, y)):
            opt.param_groups[0]["lr"] = 0.1 * (1 - step / 80)  # schedules change lr between steps
            opt.zero_grad()
            (p.pow(4).sum() + p.sum()).backward()
            opt.step()
    assert torch.allclose(x, y, atol=1e-6)
    assert not torch.allclose(x, torch.zeros(6))


def test_box3_equals_replicate_padded_box_filter_and_backpropagates():
    torch.manual_seed(0)
    for shape in ((1, 3, 5, 6, 7), (1, 2, 1, 4, 3)):
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        assert torch.allclose(box3(x), box_filter(x, 3), atol=1e-12)
        g_ours = torch.autograd.grad(box3(x).pow(2).sum(), x)[0]
        g_ref = torch.autograd.grad(box_filter(x, 3).pow(2).sum(), x)[0]
        assert torch.allclose(g_ours, g_ref, atol=1e-12)


def test_surrogate_gradient_equals_autograd_of_the_quadratic_loss():
    torch.manual_seed(0)
    size = (4, 5, 6)
    field = torch.randn(1, 3, *size, dtype=torch.float64, requires_grad=True)
    field0 = torch.randn(1, 3, *size, dtype=torch.float64)
    g = torch.randn(4, 3, *size, dtype=torch.float64)
    resid = torch.randn(4, *size, dtype=torch.float64)
    b = (resid[:, None] * g).sum(0)
    hess = torch.einsum("cipqr,cjpqr->ijpqr", g, g)
    w = torch.rand(size, dtype=torch.float64)
    w = w / w.sum()
    delta = field - field0
    quad = (delta[:, :, None] * hess[None] * delta[:, None, :]).sum(dim=(1, 2))[0]
    loss = ((2 * (b[None] * delta).sum(1)[0] + quad) * w).sum() + 6.0 * diffusion_penalty(field)
    loss.backward()
    h = [[hess[i, j] for j in range(3)] for i in range(3)]
    assert torch.allclose(surrogate_gradient(field.detach(), field0, b, h, w, 6.0), field.grad, atol=1e-12)


def test_coupled_convex_picks_the_cheapest_shift_when_coupling_is_weak():
    r = torch.arange(-2, 3, 2.0)
    shifts = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    cost = torch.ones(shifts.shape[0], 4, 4, 4)
    target = int(((shifts - torch.tensor([2.0, 0.0, -2.0])).abs().sum(1) == 0).nonzero()[0, 0])
    cost[target] = 0.0  # every cell prefers the shift (2, 0, -2)
    disp = coupled_convex(cost, shifts, (1e-4,), chunk=7)  # small chunks exercise the chunked argmin
    assert torch.allclose(disp[0, :, 1, 1, 1], torch.tensor([2.0, 0.0, -2.0]), atol=1e-5)


def test_smooth_field_is_its_own_adjoint():
    """The Adam stage back-propagates through the smoothing by smoothing the gradient: S^T = S must hold."""
    import torch

    from multimodalgen.registration.sampling import smooth_field

    torch.manual_seed(0)
    x = torch.randn(1, 3, 7, 5, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 3, 7, 5, 6, dtype=torch.float64)
    (smooth_field(x, 3) * g).sum().backward()
    with torch.no_grad():
        assert torch.allclose(smooth_field(g, 3), x.grad, atol=1e-12)
        assert torch.allclose(smooth_field(x, 3), smooth_field(x.detach(), 3), atol=1e-12)


def test_gaussian_smooth_and_dilate_match_scipy():
    """The registration's scipy-free Gaussian (anti-aliasing) and mask dilation give scipy.ndimage's values."""
    from scipy.ndimage import binary_dilation, gaussian_filter

    from multimodalgen.registration.grid import dilate, gaussian_smooth

    rng = np.random.default_rng(0)
    img = rng.random((13, 9, 11)).astype(np.float32)
    for sigma in [(0.8, 0.0, 1.3), (0.3, 0.5, 0.0), (2.0, 2.0, 2.0)]:
        np.testing.assert_allclose(gaussian_smooth(img, sigma), gaussian_filter(img, sigma, mode="nearest",
                                                                                truncate=3.0), atol=1e-5)
    mask = rng.random((12, 10, 9)) > 0.93
    mask[0, 0, 0] = mask[-1, -1, -1] = True
    for it in (1, 2):
        np.testing.assert_array_equal(dilate(mask, it), binary_dilation(mask, iterations=it))


def test_correlation_volume_on_cells_equals_the_strided_version():
    from multimodalgen.registration.convexadam import _correlation_cells, _correlation_strided

    torch.manual_seed(1)
    for shape, (cell, search, step) in [((9, 8, 7), (2, 2, 2)), ((12, 11, 10), (3, 1, 3)), ((10, 9, 8), (2, 1, 4))]:
        fix, mov = torch.rand(1, 4, *shape), torch.rand(1, 4, *shape)
        ref, ref_shifts = _correlation_strided(fix, mov, cell, search, step)
        fast, shifts = _correlation_cells(fix, mov, cell, search, step // cell)
        assert torch.equal(shifts, ref_shifts)
        assert torch.allclose(fast, ref, atol=1e-6)
