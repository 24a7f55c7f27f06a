"""synth-2 physics-shaped modality renderers: one subject's tissue map -> MR (T1, T2, PD, FLAIR), CT, PET images.

A subject has per-tissue properties drawn once (`sample_tissue_properties`): MR relaxation times T1, T2 (ms) and
proton density, CT attenuation (HU) and PET uptake (relative). Each modality is a fixed family of mappings of those
properties, with acquisition parameters drawn per image:

- MR spin echo (T1: TR 400-700 ms, TE 8-20; T2: TR 3000-6000, TE 80-120; PD: TR 2000-4000, TE 10-20):
  S = PD (1 - exp(-TR/T1)) exp(-TE/T2); half of the T1 images are MPRAGE-like inversion recovery instead (TI 800-1100,
  TR 2000-2500, TE 3), which gives the stronger grey/white contrast of 3D T1 scans; FLAIR (inversion recovery, TI 2000-2600, TR 8000-10000, TE 100-140):
  S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2). Then bias field, Rician noise, optional gamma.
  With probability `p_epi` an MR image is EPI-like: geometric distortion along one axis and signal drop-out.
- CT: attenuation in HU with HU ordering air < fat < CSF < white < grey < bone; Gaussian noise in HU.
- PET (FDG-like): uptake grey > white >> CSF, blurred to 4-8 mm FWHM, signal-dependent noise.

Every image then gets partial-volume blur, a random slice thickness (1-7 mm, one axis) and, with some probability,
strong smoothing (FWHM 4-10 mm, like smoothed templates). Images are returned in physical units (MR arbitrary
units, CT in HU, PET relative uptake); callers normalise them with `multimodalgen.intensity.normalize` exactly as
inference does. Shapes: class and sub-class maps `(I, J, K)` int64; images `(I, J, K)` float32.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from multimodalgen.synthesis.fields import gaussian_blur, make_generator, multiscale_noise, smooth_noise

MR_MODALITIES = ("T1", "T2", "PD", "FLAIR")
MODALITIES = MR_MODALITIES + ("CT", "PET")
FWHM = 2.3548

#: Prototype properties per head class (0 air, 1 GM, 2 WM, 3 CSF, 4 skull, 5 soft tissue), each as a list of
#: sub-tissue alternatives: (T1 ms, T2 ms, PD, HU, PET uptake).
_PROTOTYPES = {
    0: [(1000.0, 50.0, 0.0, -1000.0, 0.0)],
    1: [(1300.0, 95.0, 0.82, 40.0, 1.0)],
    2: [(780.0, 75.0, 0.70, 28.0, 0.32)],
    3: [(3800.0, 1800.0, 1.0, 8.0, 0.04)],
    4: [(300.0, 40.0, 0.12, 1200.0, 0.08), (280.0, 70.0, 0.6, 500.0, 0.12)],       # cortical bone, marrow
    5: [(270.0, 80.0, 0.9, -100.0, 0.12), (900.0, 45.0, 0.75, 45.0, 0.2)],         # fat, muscle/skin
}


@dataclasses.dataclass
class TissueTable:
    """Per (class, sub-class) properties: `values[c][s] = (T1, T2, PD, HU, uptake)` for this subject."""

    values: dict[int, list[tuple[float, float, float, float, float]]]

    def lookup(self, classes: torch.Tensor, subclasses: torch.Tensor, column: int) -> torch.Tensor:
        """Property `column` as an `(I, J, K)` float32 map."""
        out = torch.zeros(classes.shape, dtype=torch.float32, device=classes.device)
        for c, subs in self.values.items():
            for s, props in enumerate(subs):
                out = torch.where((classes == c) & (subclasses == s), torch.tensor(props[column],
                                                                                   device=classes.device), out)
        return out


def sample_tissue_properties(rng: np.random.Generator, subclasses: tuple[int, ...], jitter: float = 0.12
                             ) -> TissueTable:
    """This subject's tissue table: each class's sub-classes draw one prototype alternative and a log-normal jitter
    (`jitter` for the class, a quarter of it between sub-classes)."""
    values = {}
    for c, protos in _PROTOTYPES.items():
        base = np.asarray(protos[int(rng.integers(len(protos)))])
        class_j = np.exp(rng.normal(0.0, jitter, 5))
        subs = []
        for s in range(max(1, subclasses[c] if c < len(subclasses) else 1)):
            proto = np.asarray(protos[s % len(protos)]) if len(protos) > 1 else base
            j = class_j * np.exp(rng.normal(0.0, jitter / 4.0, 5))
            t1, t2, pd = proto[0] * j[0], proto[1] * j[1], min(1.0, proto[2] * j[2])
            hu = proto[3] + (abs(proto[3]) * (j[3] - 1.0) if c != 0 else rng.normal(0.0, 10.0))
            uptake = proto[4] * j[4]
            subs.append((float(t1), float(t2), float(pd), float(hu), float(uptake)))
        values[c] = subs
    return TissueTable(values)


@dataclasses.dataclass
class AcquisitionParams:
    """One image's random acquisition (see module docstring). Lengths in mm."""

    modality: str
    seed: int
    tr: float
    te: float
    ti: float
    slice_axis: int
    slice_mm: float
    smooth_fwhm_mm: float
    bias: float
    noise: float
    gamma: float
    epi: bool
    epi_shift_vox: float


def sample_acquisition(rng: np.random.Generator, modality: str, p_epi: float = 0.1, p_smooth: float = 0.25
                       ) -> AcquisitionParams:
    """Random acquisition of `modality` (one of `MODALITIES`)."""
    if modality not in MODALITIES:
        raise ValueError(f"no renderer for modality {modality!r}; known: {MODALITIES}")
    ranges = {"T1": ((400, 700), (8, 20)), "T2": ((3000, 6000), (80, 120)), "PD": ((2000, 4000), (10, 20)),
              "FLAIR": ((8000, 10000), (100, 140))}
    tr, te = (float(rng.uniform(*ranges[modality][0])), float(rng.uniform(*ranges[modality][1]))) \
        if modality in ranges else (0.0, 0.0)
    thick = float(rng.uniform(1.0, 7.0)) if rng.random() < 0.6 else float(rng.uniform(1.0, 2.0))
    is_mr = modality in MR_MODALITIES
    ti = float(rng.uniform(2000, 2600)) if modality == "FLAIR" else 0.0
    if modality == "T1" and rng.random() < 0.5:                                  # MPRAGE-like
        tr, te, ti = float(rng.uniform(2000, 2500)), 3.0, float(rng.uniform(800, 1100))
    return AcquisitionParams(
        modality=modality, seed=int(rng.integers(0, 2**31 - 1)), tr=tr, te=te, ti=ti,
        slice_axis=int(rng.integers(3)), slice_mm=thick,
        smooth_fwhm_mm=float(rng.uniform(4.0, 10.0)) if rng.random() < p_smooth else 0.0,
        bias=float(rng.uniform(0.0, 0.35)) if is_mr else 0.0,
        noise=float(rng.uniform(0.0, 0.05)) if modality != "CT" else float(rng.uniform(2.0, 20.0)),
        gamma=float(np.exp(rng.normal(0.0, 0.15))) if is_mr and rng.random() < 0.3 else 1.0,
        epi=bool(is_mr and rng.random() < p_epi), epi_shift_vox=float(rng.uniform(0.5, 2.0)))


def mr_signal(t1: torch.Tensor, t2: torch.Tensor, pd: torch.Tensor, acq: AcquisitionParams) -> torch.Tensor:
    """Spin-echo (or, for FLAIR, inversion-recovery) magnitude signal of property maps (ms, ms, [0, 1])."""
    t1, t2 = t1.clamp_min(1.0), t2.clamp_min(1.0)
    if acq.ti > 0:                                                               # inversion recovery
        return pd * (1.0 - 2.0 * torch.exp(-acq.ti / t1) + torch.exp(-acq.tr / t1)).abs() * torch.exp(-acq.te / t2)
    return pd * (1.0 - torch.exp(-acq.tr / t1)) * torch.exp(-acq.te / t2)


def _resolution(image: torch.Tensor, acq: AcquisitionParams, spacing: float) -> torch.Tensor:
    """Partial volume, slice thickness and optional template-like smoothing, as one Gaussian per axis."""
    sig = [0.45, 0.45, 0.45]                                                  # partial volume (voxels)
    extra = max(0.0, acq.slice_mm ** 2 - spacing ** 2) ** 0.5 / FWHM / spacing
    sig[acq.slice_axis] = (sig[acq.slice_axis] ** 2 + extra ** 2) ** 0.5
    if acq.smooth_fwhm_mm > 0:
        s = acq.smooth_fwhm_mm / FWHM / spacing
        sig = [(v ** 2 + s ** 2) ** 0.5 for v in sig]
    if acq.modality == "PET":
        s = 6.0 / FWHM / spacing
        sig = [(v ** 2 + s ** 2) ** 0.5 for v in sig]
    return gaussian_blur(image, tuple(sig))


def _epi(image: torch.Tensor, acq: AcquisitionParams, gen: torch.Generator) -> torch.Tensor:
    """EPI-like distortion along `slice_axis`'s neighbour (the phase-encode axis) and a smooth signal drop-out."""
    shape = tuple(image.shape)
    axis = (acq.slice_axis + 1) % 3
    shift = smooth_noise(gen, 1, tuple(max(2, n // 8) for n in shape), shape, image.device)[0] * acq.epi_shift_vox
    idx = torch.stack(torch.meshgrid(*[torch.arange(n, device=image.device, dtype=torch.float32) for n in shape],
                                     indexing="ij"), -1)
    idx[..., axis] = idx[..., axis] + shift
    size = torch.tensor(shape, dtype=torch.float32, device=image.device)
    grid = (2.0 * idx / (size - 1.0) - 1.0).flip(-1)
    warped = F.grid_sample(image[None, None], grid[None], mode="bilinear", padding_mode="border",
                           align_corners=True)[0, 0]
    dropout = torch.sigmoid(4.0 * smooth_noise(gen, 1, (3, 3, 3), shape, image.device)[0] + 3.0)
    return warped * dropout


def render_modality(classes: torch.Tensor, subclasses: torch.Tensor, table: TissueTable, acq: AcquisitionParams,
                    spacing: float) -> torch.Tensor:
    """One image `(I, J, K)` float32 in physical units (see module docstring). Deterministic given `acq`."""
    gen = make_generator(acq.seed, classes.device)
    shape = tuple(classes.shape)
    texture = 1.0 + 0.03 * multiscale_noise(gen, 1, shape, (2, 6), (1.0, 1.0), classes.device)[0]
    if acq.modality in MR_MODALITIES:
        image = mr_signal(table.lookup(classes, subclasses, 0), table.lookup(classes, subclasses, 1),
                          table.lookup(classes, subclasses, 2), acq) * texture
    elif acq.modality == "CT":
        image = table.lookup(classes, subclasses, 3) + 3.0 * (texture - 1.0) / 0.03        # ~3 HU texture
    else:
        image = table.lookup(classes, subclasses, 4) * texture
    image = _resolution(image, acq, spacing)
    if acq.modality in MR_MODALITIES:
        if acq.epi:
            image = _epi(image, acq, gen)
        if acq.bias > 0:
            image = image * torch.exp(acq.bias * multiscale_noise(gen, 1, shape, (max(2, shape[0] // 2),),
                                                                  (1.0,), classes.device)[0])
        scale = float(image.max().clamp_min(1e-6))
        n1 = torch.randn(shape, generator=gen, device=classes.device) * acq.noise * scale
        n2 = torch.randn(shape, generator=gen, device=classes.device) * acq.noise * scale
        image = torch.sqrt((image + n1) ** 2 + n2 ** 2)                      # Rician magnitude
        if acq.gamma != 1.0:
            image = scale * (image / scale).clamp_min(0.0) ** acq.gamma
    elif acq.modality == "CT":
        image = image + torch.randn(shape, generator=gen, device=classes.device) * acq.noise
    else:
        image = image + torch.randn(shape, generator=gen, device=classes.device) * 0.05 * image.clamp_min(0).sqrt()
        image = image.clamp_min(0.0)
    return image
