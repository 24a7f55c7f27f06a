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

    Accumulates shifted slices in place (no padded copy: ~2x faster on CPU than `F.pad` + sums, several times
    faster than `avg_pool3d` with a 1D kernel). Returns a new tensor; `x` is not modified.
    """
    if kernel <= 1:
        return x
    import torch

    p = kernel // 2
    recording = torch.is_grad_enabled() and x.requires_grad  # `out=` writes are not differentiable
    for dim in (2, 3, 4):
        n = x.shape[dim]
        if recording:
            acc, first = x.clone(), 1
        else:  # offsets 0 and -1 in one pass (instead of a copy, then an add): acc[v] = x[v] + x[max(v - 1, 0)]
            acc, first = torch.empty_like(x), 2
            torch.mul(x.narrow(dim, 0, 1), 2.0, out=acc.narrow(dim, 0, 1))
            if n > 1:
                torch.add(x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1), out=acc.narrow(dim, 1, n - 1))
        for o in range(1, p + 1):  # then the other offsets, replicating the edge voxels
            if o < n:
                acc.narrow(dim, 0, n - o).add_(x.narrow(dim, o, n - o))
            for e in range(min(o, n)):
                acc.narrow(dim, n - 1 - e, 1).add_(x.narrow(dim, n - 1, 1))
            if o < first:
                continue
            if o < n:
                acc.narrow(dim, o, n - o).add_(x.narrow(dim, 0, n - o))
            for e in range(min(o, n)):
                acc.narrow(dim, e, 1).add_(x.narrow(dim, 0, 1))
        x = acc
    return x.div_(float(kernel) ** 3)


def mind_ssc_torch(image, radius: int = 1, dilation: int = 2):
    """MIND-SSC of a torch image `(1, 1, I, J, K)` (float) -> `(1, 12, I, J, K)` in (0, 1], same device/dtype.

    The 12 squared differences are written straight into the output in the reference channel order and every
    later step works in place (one `(12, I, J, K)` buffer instead of five: fewer page faults on CPU).
    """
    import torch
    import torch.nn.functional as F

    n_i, n_j, n_k = image.shape[2:]
    d = dilation
    padded = F.pad(image, (d,) * 6, mode="replicate")[0, 0]

    def shifted(offset):
        a, b, c = (o * d for o in offset)  # offset in {0,1,2} -> shift (o-1)*d around the centre
        return padded[a:a + n_i, b:b + n_j, c:c + n_k]

    pairs = _edge_pairs()
    diffs = torch.empty((1, len(_ORDER), n_i, n_j, n_k), dtype=image.dtype, device=image.device)
    for channel, pair in enumerate(_ORDER):
        p, q = pairs[pair]
        torch.sub(shifted(p), shifted(q), out=diffs[0, channel])
    diffs.mul_(diffs)
    mind = box_filter(diffs, 2 * radius + 1)
    del diffs
    mind.sub_(mind.amin(dim=1, keepdim=True))
    var = mind.mean(dim=1, keepdim=True)
    mean_var = float(var.mean())
    var.clamp_(mean_var * 1e-3 + 1e-12, mean_var * 1e3 + 1e-12)
    return mind.div_(var).neg_().exp_()


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
