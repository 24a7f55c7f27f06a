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
