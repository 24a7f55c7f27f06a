"""Tiny generated few-shot cases (never real data): a bright ellipsoid (label 1) and a darker box (label 2) in a
noisy background, on an anisotropic grid (slice axis k, 3 mm) with an oblique affine."""

from __future__ import annotations

import numpy as np
import pytest

SHAPE = (28, 26, 12)
SPACING = (1.0, 1.0, 3.0)


def make_case(seed: int = 0, shift=(0.0, 0.0, 0.0), shape=SHAPE):
    """(image (I,J,K) float32, truth (I,J,K) uint8 with labels 1 and 2, affine)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    centre = np.array([12.0, 12.0, 5.5]) + np.asarray(shift)
    radii = np.array([6.0, 5.0, 3.5])
    ellipsoid = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1.0
    box = np.zeros(shape, bool)
    box[20:25, 16:22, 3:9] = True
    truth = np.zeros(shape, np.uint8)
    truth[ellipsoid] = 1
    truth[box & ~ellipsoid] = 2
    image = 100.0 + 300.0 * ellipsoid + 180.0 * box + rng.normal(0, 25.0, shape)
    affine = np.diag(list(SPACING) + [1.0])
    affine[:3, 3] = (-14.0, -12.0, -18.0)
    return image.astype(np.float32), truth, affine


def paint(truth: np.ndarray, slices, axis: int = 2, labels=None) -> np.ndarray:
    """The truth on the given slices along `axis`, 0 elsewhere (optionally only some labels)."""
    out = np.zeros_like(truth)
    for s in slices:
        index = [slice(None)] * 3
        index[axis] = s
        part = truth[tuple(index)]
        if labels is not None:
            part = np.where(np.isin(part, labels), part, 0)
        out[tuple(index)] = part
    return out


@pytest.fixture
def case():
    from multimodalgen.volume import Volume

    image, truth, affine = make_case()
    return Volume(image, affine, "T1"), Volume(truth, affine, "LABEL")


@pytest.fixture
def fast_config():
    from multimodalgen.fewshot.engine import FewShotConfig
    from multimodalgen.fewshot.features import FeatureConfig
    from multimodalgen.fewshot.head import HeadConfig

    return FewShotConfig(features=FeatureConfig(encoder="off"), head=HeadConfig(steps=60, update_steps=20))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)
