"""Plausibility checks of a tissue segmentation: a wrong answer must not pass silently with exit 0.

    check_segmentation(labels, top_probability, voxel_ml, label_names) -> {"volumes_ml", "confidence", "warnings"}

Inputs: `labels` `(I, J, K)` integer label values (value v = `label_names[v]`), `top_probability` `(I, J, K)` the
winning class's softmax probability per voxel on the same grid (None: no confidence check), `voxel_ml` the volume
of one voxel in mL (mm^3 / 1000).

Checks (each failing one adds a one-sentence warning naming what was seen and what to do):
- *No brain*: grey + white matter < 50 mL (a brain in the field of view has > 300 mL even when cut).
- *Implausible proportions*: cerebrospinal fluid > 60 % of grey + white + CSF, white matter > 1.5x grey matter
  (adult heads: CSF 10-40 %, WM/GM 0.6-1.1, lower in children), or grey + white + CSF > 2300 mL (tissue outside the
  skull was called brain: adult intracranial volumes are 1100-1900 mL in native space, and heads normalised to MNI
  space are scaled up: SPM's own MNI template holds 1967 mL of grey + white + CSF by its tissue probabilities, so
  the ceiling sits 17 % above it; it was 2100 mL until session 10, which flagged Colin27 in MNI space, 2145 mL with
  normal proportions, as an input outside the model's training). On Colin27 (1 mm) the phantom-trained
  personalized-v2 calls 2485 mL brain tissue (1011 mL CSF) and the synth-2 model 2165 mL with WM/GM 1.8: both flagged.
- *Low confidence*: the mean winning probability over the voxels called brain tissue is < 0.6 (the model's
  classes compete everywhere: an input unlike anything it was trained on).
- *Cut brain*: brain tissue covers > 25 % of one face of the volume (the first or last slice along an axis): the
  field of view cuts through the brain. The models were trained mostly on whole heads (10 % partial views), and
  such inputs segment worse (oldnorm T1, 2026-12-03: whole .50; upper 80 % .53, 33 % of the face; upper 60 %
  .28, 62 %). Whole templates touch their inferior face with brain stem over < 10 %.
The thresholds are wide on purpose: they flag answers that are wrong, not unusual anatomy.
"""

from __future__ import annotations

import numpy as np

from multimodalgen.terminology import BRAIN_TISSUES, canonical_name

MIN_BRAIN_ML = 50.0
MAX_CSF_FRACTION = 0.6
MAX_WM_TO_GM = 1.5
MAX_INTRACRANIAL_ML = 2300.0
MIN_CONFIDENCE = 0.6
MAX_BRAIN_ON_FACE = 0.25


def check_segmentation(labels: np.ndarray, top_probability: np.ndarray | None, voxel_ml: float,
                       label_names: dict[int, str]) -> dict:
    """Volumes per named segment (mL), mean confidence inside brain tissue, and warnings (see module docstring)."""
    volumes = {}
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=max(label_names) + 1)
    for value, name in label_names.items():
        if value > 0:
            volumes[name] = round(float(counts[value]) * voxel_ml, 1)
    canonical = {canonical_name(n): v for n, v in volumes.items()}
    gm = canonical.get("grey matter", 0.0)
    wm = canonical.get("white matter", 0.0)
    csf = canonical.get("cerebrospinal fluid", 0.0)
    warnings: list[str] = []
    confidence = None
    tissues = {d.name for d in BRAIN_TISSUES}
    brain_values = [v for v, n in label_names.items() if canonical_name(n) in tissues]
    if not brain_values:
        return {"volumes_ml": volumes, "confidence": None, "warnings": warnings}
    if gm + wm < MIN_BRAIN_ML:
        warnings.append(f"only {gm + wm:.0f} mL of grey and white matter was found: the image may not show a brain, "
                        "or the modality names may be wrong; check the input before using this result.")
    elif (csf > MAX_CSF_FRACTION * (gm + wm + csf) or wm > MAX_WM_TO_GM * max(gm, 1e-6)
          or gm + wm + csf > MAX_INTRACRANIAL_ML):
        warnings.append(f"implausible tissue proportions (grey {gm:.0f} mL, white {wm:.0f} mL, CSF {csf:.0f} mL, "
                        f"{gm + wm + csf:.0f} mL in all): "
                        "the input is probably outside what the model was trained for; do not use these volumes.")
    if top_probability is not None:
        brain = np.isin(labels, brain_values)
        if brain.any():
            confidence = round(float(np.asarray(top_probability)[brain].mean()), 3)
            if confidence < MIN_CONFIDENCE:
                warnings.append(f"low confidence (mean {confidence:.2f} inside brain tissue, expected > "
                                f"{MIN_CONFIDENCE}): the input is unlike the model's training data; review the "
                                "result or fine-tune an adapter on a labelled case.")
    cut = _brain_on_faces(np.isin(labels, brain_values))
    if cut is not None:
        axis, side, fraction = cut
        warnings.append(f"brain tissue covers {fraction:.0%} of the {side} slice along voxel axis {axis}: the field of "
                        "view cuts through the brain; the model was trained mostly on whole heads, so check the "
                        "result near the cut (volumes there are incomplete).")
    return {"volumes_ml": volumes, "confidence": confidence, "warnings": warnings}


def _brain_on_faces(brain: np.ndarray) -> tuple[int, str, float] | None:
    """(axis, "first"|"last", fraction) of the volume face most covered by brain `(I, J, K)` bool, if above
    `MAX_BRAIN_ON_FACE`; None otherwise (also for volumes thinner than 3 voxels along an axis: single slabs)."""
    worst = None
    for axis in range(3):
        if brain.shape[axis] < 3:
            continue
        for side, index in (("first", 0), ("last", -1)):
            fraction = float(np.take(brain, index, axis=axis).mean())
            if fraction > MAX_BRAIN_ON_FACE and (worst is None or fraction > worst[2]):
                worst = (axis, side, fraction)
    return worst
