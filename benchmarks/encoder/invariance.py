"""Cross-contrast invariance metrics for voxel descriptors on aligned multi-contrast volumes.

Descriptors are `(C, I, J, K)` arrays on one shared voxel grid (the volumes are aligned exactly). Before any
metric, each descriptor is standardised per channel over the brain mask of its own volume (z-score), so every
method is compared on equal footing.

(a) `match_rate`: for voxels p sampled in the brain of contrast A, the nearest descriptor (Euclidean) among all
    voxels q of contrast B with |q - p|_inf <= search; success if |q* - p|_2 <= tol voxels.
(b) `probe_scores`: a logistic regression on contrast-A descriptors of GM/WM/CSF voxels (class-balanced
    training sample), balanced accuracy on the other contrasts' descriptors at held-out voxels.
"""

from __future__ import annotations

import numpy as np


def standardize(desc: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel z-score of `(C, I, J, K)` using the voxels in bool `mask` `(I, J, K)`; float32."""
    desc = np.asarray(desc, dtype=np.float32)
    vals = desc[:, mask]
    mean = vals.mean(axis=1)[:, None, None, None]
    std = vals.std(axis=1)[:, None, None, None] + 1e-6
    return ((desc - mean) / std).astype(np.float32)


def sample_voxels(mask: np.ndarray, n: int, rng: np.random.Generator, margin: int = 0) -> np.ndarray:
    """`(n, 3)` int voxel indices drawn uniformly (without replacement) from `mask`, `margin` away from borders."""
    m = mask.copy()
    if margin:
        m[:margin], m[-margin:] = False, False
        m[:, :margin], m[:, -margin:] = False, False
        m[:, :, :margin], m[:, :, -margin:] = False, False
    idx = np.argwhere(m)
    pick = rng.choice(len(idx), size=min(n, len(idx)), replace=False)
    return idx[pick]


def match_rate(desc_a: np.ndarray, desc_b: np.ndarray, points: np.ndarray, search: int = 6,
               tol: float = 2.0) -> float:
    """Fraction of `points` `(n, 3)` whose nearest B-descriptor within the search cube is <= tol voxels away."""
    import torch

    a = torch.from_numpy(desc_a)
    b = torch.from_numpy(desc_b)
    c = a.shape[0]
    r = search
    pad = torch.nn.functional.pad(b[None], (r,) * 6, mode="replicate")[0]
    offs = torch.stack(torch.meshgrid(*[torch.arange(-r, r + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pts = torch.from_numpy(points).long()
    hits = 0
    for chunk in torch.split(pts, 256):
        qa = a[:, chunk[:, 0], chunk[:, 1], chunk[:, 2]].t()                      # (n, C)
        q = chunk[:, None, :] + offs[None] + r                                      # (n, W, 3) in padded coords
        qb = pad[:, q[..., 0], q[..., 1], q[..., 2]].permute(1, 2, 0)              # (n, W, C)
        d = ((qb - qa[:, None, :]) ** 2).sum(-1)
        best = d.argmin(1)
        err = offs[best].float().norm(dim=1)
        hits += int((err <= tol).sum())
        del qb, d
    _ = c
    return hits / len(points)


def tissue_labels(grey: np.ndarray, white: np.ndarray, csf: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """GM=1 / WM=2 / CSF=3 where the argmax tissue probability exceeds `threshold`, else 0. Inputs in [0, 1]."""
    probs = np.stack([grey, white, csf]).astype(np.float32)
    lab = probs.argmax(0) + 1
    lab[probs.max(0) <= threshold] = 0
    return lab.astype(np.int64)


def probe_scores(train_desc: np.ndarray, test_descs: dict[str, np.ndarray], labels: np.ndarray,
                 rng: np.random.Generator, n_train_per_class: int = 2000) -> dict[str, float]:
    """Balanced accuracy of a T1-trained GM/WM/CSF logistic regression on each test descriptor.

    Training voxels (balanced per class) are drawn from half of the labelled voxels (a random split); scores
    use the other half, so the in-domain score (train contrast in `test_descs`) is a held-out score too.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    idx = np.argwhere(labels > 0)
    rng.shuffle(idx)
    train_idx, test_idx = idx[: len(idx) // 2], idx[len(idx) // 2:]
    y_all = labels[tuple(train_idx.T)]
    chosen = []
    for cls in (1, 2, 3):
        pool = np.flatnonzero(y_all == cls)
        chosen.append(rng.choice(pool, size=min(n_train_per_class, len(pool)), replace=False))
    tr = train_idx[np.concatenate(chosen)]
    x_tr = train_desc[:, tr[:, 0], tr[:, 1], tr[:, 2]].T
    y_tr = labels[tuple(tr.T)]
    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(x_tr, y_tr)
    y_te = labels[tuple(test_idx.T)]
    out = {}
    for name, desc in test_descs.items():
        x_te = desc[:, test_idx[:, 0], test_idx[:, 1], test_idx[:, 2]].T
        out[name] = float(balanced_accuracy_score(y_te, clf.predict(x_te)))
    return out
