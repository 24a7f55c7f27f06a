"""Smooth blob images for the verb tests (a module, not conftest, so any test folder mix imports it)."""

from __future__ import annotations

import numpy as np


def blobs(shape, centres):
    """`(I, J, K)` float32: 50 + sum of anisotropic Gaussian blobs `(weight, (i, j, k))` of height 1000 * weight."""
    grid = np.indices(shape).astype(np.float32)
    out = np.zeros(shape, np.float32)
    for weight, centre in centres:
        d2 = sum(((grid[a] - centre[a]) ** 2) * (1.0, 1.5, 0.7)[a] for a in range(3))
        out += weight * 1000 * np.exp(-d2 / 30.0)
    return out + 50
