"""MIND-SSC: Modality Independent Neighbourhood Descriptor with a self-similarity context (Heinrich et al. 2013).

For each voxel, the 12 channels are exp(-D_p / V) where D_p is the patch distance (box filter of side
`2 * radius + 1` voxels) between the two ends of one of the 12 edges of the 6-neighbourhood at distance
`dilation` voxels, and V the mean of the 12 distances at that voxel (a local noise/contrast estimate). The
descriptor compares a voxel with its own neighbourhood only, so it is insensitive to the modality's intensity
mapping (T1 vs T2 vs CT) and is compared across modalities with a plain sum of squared differences.

Arrays are in voxel index order `(I, J, K)`; the descriptor assumes (roughly) isotropic voxels.
"""

from __future__ import annotations

import numpy as np

#: Offsets (in units of `dilation`) of the 6-neighbourhood around the centre voxel (1, 1, 1).
_SIX = ((0, 1, 1), (1, 1, 0), (1, 0, 1), (1, 1, 2), (2, 1, 1), (1, 2, 1))
#: Channel order of the reference implementation (keeps descriptors comparable with ConvexAdam's).
_ORDER = (6, 8, 1, 11, 2, 10, 0, 7, 9, 4, 5, 3)


def _edge_pairs() -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """The 12 pairs of 6-neighbourhood offsets at squared distance 2 (the edges of the octahedron)."""
    six = np.asarray(_SIX)
    return [(tuple(six[a]), tuple(six[b])) for a in range(6) for b in range(6)
            if a > b and int(((six[a] - six[b]) ** 2).sum()) == 2]


def box_filter(x, kernel: int):
    """Centred separable box filter (odd `kernel`, replicate padding) of a `(N, C, I, J, K)` tensor.

    Implemented with shifted slices (much faster on CPU than `avg_pool3d` with a 1D kernel).
    """
    import torch.nn.functional as F

    if kernel <= 1:
        return x
    p = kernel // 2
    for dim in (2, 3, 4):
        pad = [0] * 6
        pad[2 * (4 - dim)] = pad[2 * (4 - dim) + 1] = p
        xp = F.pad(x, tuple(pad), mode="replicate")
        n = x.shape[dim]
        acc = xp.narrow(dim, 0, n).clone()
        for o in range(1, kernel):
            acc += xp.narrow(dim, o, n)
        x = acc / kernel
    return x


def mind_ssc_torch(image, radius: int = 1, dilation: int = 2):
    """MIND-SSC of a torch image `(1, 1, I, J, K)` (float) -> `(1, 12, I, J, K)` in (0, 1], same device/dtype."""
    import torch
    import torch.nn.functional as F

    n_i, n_j, n_k = image.shape[2:]
    d = dilation
    padded = F.pad(image, (d,) * 6, mode="replicate")[0, 0]

    def shifted(offset):
        a, b, c = (o * d for o in offset)  # offset in {0,1,2} -> shift (o-1)*d around the centre
        return padded[a:a + n_i, b:b + n_j, c:c + n_k]

    diffs = torch.stack([(shifted(p) - shifted(q)).pow(2) for p, q in _edge_pairs()])[None]
    ssd = box_filter(diffs, 2 * radius + 1)
    mind = ssd - ssd.min(dim=1, keepdim=True).values
    var = mind.mean(dim=1, keepdim=True)
    mean_var = float(var.mean())
    var = torch.clamp(var, mean_var * 1e-3 + 1e-12, mean_var * 1e3 + 1e-12)
    mind = torch.exp(-mind / var)
    return mind[:, list(_ORDER)]


def mind_ssc(image: np.ndarray, radius: int = 1, dilation: int = 2) -> np.ndarray:
    """MIND-SSC descriptor of a 3D image.

    Args:
        image: `(I, J, K)` array (any real dtype); intensities need no normalisation.
        radius: patch half-size in voxels (patch side `2 * radius + 1`).
        dilation: distance in voxels between the centre and its six neighbours.

    Returns:
        float32 array `(12, I, J, K)` with values in (0, 1].
    """
    import torch

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"mind_ssc expects an (I, J, K) array, got shape {arr.shape}")
    with torch.no_grad():
        out = mind_ssc_torch(torch.from_numpy(np.ascontiguousarray(arr))[None, None], radius, dilation)
    return out[0].numpy()
