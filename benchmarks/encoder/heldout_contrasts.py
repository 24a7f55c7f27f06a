"""Held-out contrasts for the encoder probe: images the synthesis engine never renders, made from the dev templates.

The engine (`multimodalgen.synthesis.physics`) trains on MR spin-echo/MPRAGE T1, T2, PD, FLAIR (some EPI-distorted),
CT and FDG-like PET (grey > white uptake). These renderers stand in for real contrasts outside those families, to
check the encoder on something it has not seen (the issue's held-out check uses real images we do not have):

- `amyloidPET`: amyloid-PET-like (white > grey >> CSF uptake, the reverse of FDG), 7 mm FWHM, 4 mm voxels,
  signal-dependent noise. A nuclear-medicine contrast whose grey/white order is the opposite of the trained PET.
- `DWI`: diffusion-weighted trace (b = 1000) -like: CSF dark, grey slightly brighter than white, fat-suppressed
  dark scalp, EPI distortion along the second axis (<= 1 voxel), susceptibility drop-out near the skull base,
  2.5 mm blur, Rician noise.
- `BOLD`: mean functional EPI (T2*-weighted) -like: CSF > grey > white with weak grey/white contrast, 3.5 mm,
  EPI distortion and drop-out, Rician noise.

Input: tissue probabilities `(3, I, J, K)` (grey, white, CSF in [0, 1]) and a bool head mask `(I, J, K)` on the
templates' 2 mm grid; output images `(I, J, K)` float32 on the same grid, normalised with
`multimodalgen.intensity.normalize` as inference normalises user images. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

VOXEL_MM = 2.0
FWHM = 2.3548
HELDOUT = ("amyloidPET", "DWI", "BOLD")


def _mix(probs: np.ndarray, head: np.ndarray, grey: float, white: float, csf: float, other: float) -> np.ndarray:
    """Partial-volume mixture: sum of tissue probability x tissue value, `other` for head voxels outside brain."""
    brain = probs.sum(0).clip(0, 1)
    return (grey * probs[0] + white * probs[1] + csf * probs[2] + other * head * (1 - brain)).astype(np.float32)


def blur_mm(image: np.ndarray, fwhm_mm: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, fwhm_mm / FWHM / VOXEL_MM).astype(np.float32)


def _lowres(image: np.ndarray, factor: float) -> np.ndarray:
    """Down-sample by `factor` (linear) and back (linear): a thicker-voxel acquisition on the same grid."""
    small = ndimage.zoom(image, 1 / factor, order=1)
    back = ndimage.zoom(small, np.array(image.shape) / np.array(small.shape), order=1)
    return back[: image.shape[0], : image.shape[1], : image.shape[2]].astype(np.float32)


def epi_distort(image: np.ndarray, rng: np.random.Generator, max_shift: float, dropout: float) -> np.ndarray:
    """EPI distortion along axis 1 (smooth shift field, <= max_shift voxels) and drop-out near the skull base
    (orbitofrontal and temporal poles, by position in an MNI-like `(I, J, K)` = (R-L or L-R, P-A, I-S) volume;
    `dropout` = the largest signal loss, 0..1). Also used by `benchmarks/personalized/real_heads.py`."""
    shape = image.shape
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 6.0)
    field *= max_shift / (np.abs(field).max() + 1e-6)
    grid = list(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    grid[1] = grid[1] + field.astype(np.float32)
    warped = ndimage.map_coordinates(image, grid, order=1, mode="nearest")
    i, j, k = (g / s for g, s in zip(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), shape))
    # susceptibility drop-out: orbitofrontal (anterior, inferior) and temporal poles (lateral, inferior)
    loss = np.exp(-(((j - 0.78) / 0.08) ** 2 + ((k - 0.28) / 0.07) ** 2 + ((i - 0.5) / 0.18) ** 2))
    loss += np.exp(-(((np.abs(i - 0.5) - 0.3) / 0.07) ** 2 + ((j - 0.62) / 0.08) ** 2 + ((k - 0.25) / 0.07) ** 2))
    return (warped * (1 - dropout * loss.clip(0, 1))).astype(np.float32)


def rician(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    a = image + rng.normal(0, sigma, image.shape)
    b = rng.normal(0, sigma, image.shape)
    return np.sqrt(a * a + b * b).astype(np.float32)


def render_heldout(name: str, probs: np.ndarray, head: np.ndarray, seed: int = 0) -> np.ndarray:
    """One held-out contrast (see the module docstring), normalised like user images at inference."""
    from multimodalgen.intensity import normalize

    rng = np.random.default_rng([seed, HELDOUT.index(name)])
    if name == "amyloidPET":
        image = _lowres(blur_mm(_mix(probs, head, 0.55, 1.0, 0.08, 0.12), 7.0), 2.0)
        image = np.clip(image + rng.normal(0, 1, image.shape) * 0.04 * np.sqrt(np.clip(image, 0, None)), 0, None)
        return normalize(image.astype(np.float32), "PET")
    if name == "DWI":
        image = blur_mm(_mix(probs, head, 1.0, 0.85, 0.12, 0.08), 2.5)
        image = rician(epi_distort(image, rng, 1.0, 0.7), rng, 0.04)
        return normalize(image, "MR")
    if name == "BOLD":
        image = _lowres(blur_mm(_mix(probs, head, 0.72, 0.6, 1.0, 0.25), 3.5), 1.75)
        image = rician(epi_distort(image, rng, 1.0, 0.8), rng, 0.03)
        return normalize(image, "MR")
    raise ValueError(f"unknown held-out contrast {name!r}; expected one of {HELDOUT}")
