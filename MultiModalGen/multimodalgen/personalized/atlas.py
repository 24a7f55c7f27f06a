"""A tissue atlas as a spatial prior for `segment --atlas`: where each tissue usually is, placed on the patient.

The atlas is a 4D tissue probability map `(I, J, K, 6)` in SPM's TPM order (grey matter, white matter, CSF, bone,
soft tissue, air/background), e.g. SPM12's `tpm/TPM.nii` (GPL-2, so the extension does not ship it; the user points
to their own copy). It is placed on the input by this package's affine registration: a pseudo-image is rendered from
the atlas alone (`PSEUDO_INTENSITY`, T1-like), registered to the reference image with MIND features (contrast
insensitive, so T2, PD, FLAIR and CT inputs work too), and each class map is resampled through the transform onto
the reference grid. The network's probabilities are then multiplied by the placed atlas at power `weight` and
renormalised before the intensity refinement: the way SPM's unified segmentation uses its atlas
(`benchmarks/personalized/atlas_fusion_probe.py` measured the gain, `atlas_registration_probe.py` the placement).

A wrong placement would give a confident wrong answer, so the placed atlas is checked against the network's own
brain before it is used (`check_placement`): the Dice of the two brains (grey + white + CSF) must reach
`MIN_BRAIN_AGREEMENT`, else UserInputError says so and nothing is written.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.volume import Volume

if TYPE_CHECKING:
    import torch

ATLAS_CLASSES = ("grey matter", "white matter", "cerebrospinal fluid", "skull", "soft tissue", "background")
"""The atlas's volumes in file order (SPM TPM: GM, WM, CSF, bone, soft tissue, air), as this package names them."""
PSEUDO_INTENSITY = (0.55, 1.0, 0.1, 0.15, 0.7, 0.0)
"""Intensity of each atlas class in the pseudo-image that is registered to the input (T1-like)."""
DEFAULT_ATLAS_WEIGHT = 4.0
"""Power of the atlas in the fusion: the best of 1, 2, 4, 8 on Colin27, the one individual brain (unregistered,
`atlas_fusion_probe.py`; registered, 2 / 4 / 8, `atlas_weight_sweep.py`); the templates (population averages, whose
truth favours any atlas) keep rising with the weight, so they did not decide it. 0 turns the atlas off."""
MAX_ATLAS_WEIGHT = 16.0
PROBABILITY_FLOOR = 1e-3
"""Added to every placed class map, so no class is impossible where the atlas says 0 (outside its box all classes
are equal and the network decides alone)."""
MIN_BRAIN_AGREEMENT = 0.85
"""Least Dice between the placed atlas's brain and the network's brain for the placement to be trusted."""
BRAIN_CLASSES = ("grey matter", "white matter", "cerebrospinal fluid")


@dataclasses.dataclass(frozen=True)
class TissueAtlas:
    """A tissue atlas: `maps` `(6, I, J, K)` float32 probabilities in `ATLAS_CLASSES` order, `affine` 4x4 voxel ->
    RAS mm, `source` the file it came from."""

    maps: np.ndarray
    affine: np.ndarray
    source: str

    def pseudo_image(self) -> Volume:
        """The atlas rendered as one T1-like image `(I, J, K)` on the atlas grid (`PSEUDO_INTENSITY`)."""
        image = np.tensordot(np.asarray(PSEUDO_INTENSITY, np.float32), self.maps, axes=1)
        return Volume(image.astype(np.float32), self.affine.copy(), "T1")


def read_tissue_atlas(path: str | Path) -> TissueAtlas:
    """Read and check a 4D tissue atlas (NIfTI `(I, J, K, 6)`, SPM TPM order, values in [0, 1]).

    Raises UserInputError (what was expected, what arrived, the fix) for a missing or unreadable file, another
    dimensionality or class count, non-finite values, values outside [0, 1] or an atlas that is empty."""
    import nibabel as nib  # the package's image reader refuses 4D images on purpose; an atlas is the one 4D input

    path = Path(path)
    fix = "give a 4D tissue probability map with 6 volumes in SPM's order, e.g. SPM12's tpm/TPM.nii"
    if not path.is_file():
        raise UserInputError("tissue atlas not found", got=str(path), fix=fix)
    try:
        image = nib.load(str(path))
        shape = tuple(int(s) for s in image.shape)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds for a file that is not a NIfTI
        raise UserInputError(f"cannot read the tissue atlas {path.name}", expected="a NIfTI file (.nii, .nii.gz)",
                             got=str(exc).splitlines()[0][:120], fix=fix) from None
    if len(shape) != 4 or shape[3] != len(ATLAS_CLASSES):
        raise UserInputError(f"{path.name} is not a tissue atlas", expected=f"a 4D image with "
                             f"{len(ATLAS_CLASSES)} volumes ({', '.join(ATLAS_CLASSES)})", got=f"shape {shape}",
                             fix=fix)
    try:
        array = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt voxel data
        raise UserInputError(f"cannot read the voxels of {path.name}", got=str(exc).splitlines()[0][:120],
                             fix="the file may be truncated; copy it again") from None
    if not np.isfinite(array).all():
        raise UserInputError(f"the tissue atlas {path.name} has NaN or infinite values", expected="probabilities",
                             fix=fix)
    low, high = float(array.min()), float(array.max())
    if low < -1e-3 or high > 1.0 + 1e-3:
        raise UserInputError(f"the tissue atlas {path.name} is not a probability map", expected="values in [0, 1]",
                             got=f"values in [{low:.3g}, {high:.3g}]", fix=fix)
    brain = array[..., :3].sum(-1)
    if float(brain.max()) < 0.5:
        raise UserInputError(f"the tissue atlas {path.name} has no brain", expected="grey + white + CSF >= .5 "
                             "somewhere (volumes 1-3)", got=f"at most {float(brain.max()):.2f}", fix=fix)
    return TissueAtlas(np.ascontiguousarray(np.moveaxis(np.clip(array, 0.0, 1.0), -1, 0)),
                       np.asarray(image.affine, np.float64), str(path))


def check_atlas_labels(labels: tuple[str, ...]) -> None:
    """UserInputError when a model's labels have no atlas class (an adapter with its own labels, say)."""
    missing = [name for name in labels if name not in ATLAS_CLASSES]
    if missing:
        raise UserInputError(f"the tissue atlas has no class for this model's labels {', '.join(missing)}",
                             expected=f"a model whose labels are among {', '.join(ATLAS_CLASSES)}",
                             fix="run without --atlas (an adapter with its own labels cannot use a tissue atlas)")


def place_atlas(atlas: TissueAtlas, reference: Volume, labels: tuple[str, ...], device="cpu",
                mode: str = "affine") -> tuple[np.ndarray, dict]:
    """The atlas on `reference`'s grid, one map per model label: `((C, I, J, K) float32, report)`.

    `reference` is a scalar image of the patient (any modality MIND can see structure in); the atlas's pseudo-image
    is registered to it (`register_volumes`, `mode` "affine" by default), each class map warped through the result,
    `PROBABILITY_FLOOR` added. The report has the registration's seconds (warp included), the linear part's volume
    scale (atlas -> patient) and `brain_in_view`, the share of the atlas's brain (grey + white + CSF, scaled) that
    falls inside the image."""
    from multimodalgen.registration.engine import register_volumes
    from multimodalgen.registration.export import warp_volume

    check_atlas_labels(labels)
    t0 = time.perf_counter()
    result = register_volumes(reference, atlas.pseudo_image(), mode=mode, device=device)
    placed = np.stack([warp_volume(result, Volume(atlas.maps[ATLAS_CLASSES.index(name)], atlas.affine, "T1")).array
                       for name in labels]).astype(np.float32) + PROBABILITY_FLOOR
    det = float(abs(np.linalg.det(result.affine[:3, :3])))       # atlas mm^3 per patient mm^3
    volume_scale = 1.0 / det if det > 0 else float("inf")
    brain = [i for i, name in enumerate(labels) if name in BRAIN_CLASSES]
    brain_ml = float((placed[brain] - PROBABILITY_FLOOR).sum()) * abs(np.linalg.det(reference.affine[:3, :3])) / 1e3
    atlas_brain_ml = float(atlas.maps[[ATLAS_CLASSES.index(labels[i]) for i in brain]].sum()) * abs(
        np.linalg.det(atlas.affine[:3, :3])) / 1e3 * volume_scale
    return placed, {"registration_seconds": round(time.perf_counter() - t0, 2), "volume_scale": round(volume_scale, 3),
                    "brain_in_view": round(float(brain_ml / atlas_brain_ml), 3) if atlas_brain_ml > 0 else 0.0}


MIN_BRAIN_IN_VIEW = 0.5
"""Below this share of the atlas's brain inside the image, the result carries a warning (`view_warning`)."""


def view_warning(report: dict) -> str | None:
    """A warning for `place_atlas`'s report when the image shows little of the brain the atlas expects."""
    share = report.get("brain_in_view")
    if isinstance(share, (int, float)) and share < MIN_BRAIN_IN_VIEW:
        return (f"the image shows about {100 * share:.0f}% of the brain the tissue atlas expects: on a partial field "
                "of view the atlas's placement is weakly constrained, check the result or run without --atlas")
    return None


def brain_agreement(probs: torch.Tensor, placed: np.ndarray, labels: tuple[str, ...]) -> float:
    """Dice of the network's brain (argmax in grey/white/CSF) and the placed atlas's brain (grey + white + CSF
    probability > .5); `probs` and `placed` are `(C, I, J, K)` in `labels` order. 0 when neither has a brain."""
    index = [labels.index(name) for name in BRAIN_CLASSES if name in labels]
    network = np.isin(probs.argmax(0).cpu().numpy(), index)
    atlas = placed[index].sum(0) > 0.5
    total = int(network.sum()) + int(atlas.sum())
    return 2.0 * float((network & atlas).sum()) / total if total else 0.0


def check_placement(agreement: float, source: str) -> None:
    """UserInputError when the placed atlas's brain and the network's brain disagree (a failed registration, an
    image that is not a head, an atlas of something else): a wrong prior must not give a confident answer."""
    if agreement < MIN_BRAIN_AGREEMENT:
        raise UserInputError(f"the tissue atlas {Path(source).name} could not be placed on this image (its brain "
                             f"overlaps the model's brain by Dice {agreement:.2f})",
                             expected=f"at least {MIN_BRAIN_AGREEMENT:.2f} for a head the atlas fits",
                             fix="check that the image is a head and the atlas a head atlas, or run without --atlas")


def fuse_atlas(probs: torch.Tensor, placed: np.ndarray, weight: float) -> torch.Tensor:
    """`probs * placed**weight`, renormalised over classes: `(C, I, J, K)` like `probs`."""
    import torch

    fused = probs * torch.from_numpy(placed).to(probs) ** weight
    return fused / fused.sum(0, keepdim=True).clamp_min(1e-12)


def apply_atlas(probs: torch.Tensor, atlas: TissueAtlas, reference: Volume, labels: tuple[str, ...],
                weight: float, device="cpu") -> tuple[torch.Tensor, dict]:
    """The whole atlas step of `segment_volumes`: place the atlas on `reference` (`place_atlas`), check it against
    the network's brain (`brain_agreement`, `check_placement`: UserInputError when they disagree) and fuse it into
    `probs` `(C, I, J, K)` (`fuse_atlas`). Returns (fused probabilities, report: source file name, weight,
    brain_agreement, registration_seconds, volume_scale, brain_in_view)."""
    placed, placement = place_atlas(atlas, reference, labels, device)
    agreement = brain_agreement(probs, placed, labels)
    report = {"source": Path(atlas.source).name, "weight": float(weight), "brain_agreement": round(agreement, 3),
              **placement}
    check_placement(agreement, atlas.source)
    return fuse_atlas(probs, placed, weight), report


def check_atlas_weight(weight: float) -> None:
    """UserInputError for a weight that is not a finite number in [0, MAX_ATLAS_WEIGHT]."""
    if not isinstance(weight, (int, float)) or not np.isfinite(weight) or not 0 <= weight <= MAX_ATLAS_WEIGHT:
        raise UserInputError("invalid atlas weight", expected=f"a number from 0 (atlas off) to {MAX_ATLAS_WEIGHT:g} "
                             f"(default {DEFAULT_ATLAS_WEIGHT:g})", got=repr(weight))
