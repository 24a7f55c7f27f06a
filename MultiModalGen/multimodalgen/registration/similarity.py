"""Similarity reported before/after each stage (report.json): weighted mean squared feature difference.

Features (MIND-SSC, + encoder when used) are recomputed on the moving image resampled into the fixed working
grid through the transform of the stage, and both images are box-averaged to twice the working spacing (cheap,
and comparable across stages). Lower is better; 0 means identical descriptors.
"""

from __future__ import annotations

import numpy as np


def weighted_ssd(fix_feat, warped_feat, weight) -> float:
    """Weighted mean over voxels of the channel-mean squared difference of two `(1, C, I, J, K)` feature maps."""
    import torch

    with torch.no_grad():
        per_voxel = (warped_feat - fix_feat).pow(2).mean(1)[0]
        w = weight[0, 0]
        return round(float((per_voxel * w).sum() / w.sum().clamp_min(1e-6)), 6)


class Similarity4mm:
    """Callable `(affine, disp_vox=None) -> float` for one registration run.

    Args:
        fix_img: fixed working image `(I, J, K)` numpy; weight: `(1, 1, I, J, K)` tensor;
        mov_t: moving working image `(1, 1, i, j, k)` tensor; mgrid, fgrid: the working grids;
        feats: features function; warp: `warp(mov_t, mgrid, fgrid, affine, disp_vox)` -> image on the fixed grid.
    """

    def __init__(self, fix_img, weight, mov_t, mgrid, fgrid, feats, warp):
        import torch
        import torch.nn.functional as F

        self.pool = lambda x: F.avg_pool3d(x, 2, stride=2, ceil_mode=True)  # noqa: E731
        fix_t = torch.from_numpy(np.ascontiguousarray(fix_img))[None, None].to(mov_t.device)
        self.fix = feats(self.pool(fix_t))
        self.weight = self.pool(weight)
        self.mov_t, self.mgrid, self.fgrid, self.feats, self.warp = mov_t, mgrid, fgrid, feats, warp

    def __call__(self, affine: np.ndarray, disp_vox=None) -> float:
        warped = self.warp(self.mov_t, self.mgrid, self.fgrid, affine, disp_vox)
        return weighted_ssd(self.fix, self.feats(self.pool(warped)), self.weight)


class MutualInformationScore:
    """Callable `(affine, disp_vox=None) -> float`: mutual information (nats, higher is better) between the fixed
    working image and the moving working image sampled through the transform ``T(x) = affine(x + W d(x))``, at
    (at most `max_points`, evenly spread) fixed foreground voxels (weight > 0.05) of the working grid; points that
    land outside the moving grid are left out.

    Args:
        fix_img: fixed working image `(I, J, K)` numpy in [0, 1]; weight: `(1, 1, I, J, K)` tensor;
        mov_t: moving working image `(1, 1, i, j, k)` tensor; mgrid, fgrid: the working grids (`grid.WorkingGrid`).
    """

    def __init__(self, fix_img, weight, mov_t, mgrid, fgrid, max_points: int = 20_000):
        import torch

        sel = torch.nonzero(weight[0, 0] > 0.05)
        if sel.shape[0] > max_points:
            sel = sel[torch.linspace(0, sel.shape[0] - 1, max_points).long()]
        fix_t = torch.from_numpy(np.ascontiguousarray(fix_img)).to(mov_t.device)
        self.sel = sel
        self.fix_vals = fix_t[sel[:, 0], sel[:, 1], sel[:, 2]].float()
        self.points = sel.to(torch.float64)
        self.mov_t, self.mgrid, self.fgrid = mov_t, mgrid, fgrid

    def __call__(self, affine: np.ndarray, disp_vox=None) -> float:
        import torch

        from multimodalgen.registration.mutual_information import sampled_mutual_information
        from multimodalgen.registration.sampling import apply_matrix

        with torch.no_grad():
            pts = self.points
            if disp_vox is not None:
                s = self.sel
                pts = pts + disp_vox[0][:, s[:, 0], s[:, 1], s[:, 2]].T.to(pts.dtype)
            idx = apply_matrix(np.linalg.inv(self.mgrid.affine) @ affine @ self.fgrid.affine, pts).float()
            return round(float(sampled_mutual_information(self.fix_vals, self.mov_t, idx)), 6)
