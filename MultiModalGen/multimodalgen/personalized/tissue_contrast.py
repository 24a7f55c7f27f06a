"""Expected brightness order of brain tissues per modality (textbook MR/CT/PET physics), for naming intensity
clusters in `personalized.refine`.

    brightness_matrix(modalities, class_names) -> (M, G) float tensor, NaN where unknown

Values are relative (only their order is used): T1 white > grey > CSF; T2 CSF > grey > white; PD grey > white (CSF
brighter or darker depending on TR, so not used); FLAIR grey > white > CSF (CSF nulled); CT grey (~40 HU) > white (~30 HU) > CSF (~8 HU); FDG-PET grey > white
>> CSF. They agree with the synth-2 tissue prototypes (`synthesis.physics`). A modality or class not in the table
gets NaN (its order is then not used).
"""

from __future__ import annotations

import math

import torch

from multimodalgen.terminology import canonical_name

#: modality -> {canonical tissue name: relative brightness}
TISSUE_BRIGHTNESS: dict[str, dict[str, float]] = {
    "T1": {"grey matter": 0.6, "white matter": 1.0, "cerebrospinal fluid": 0.0},
    "T2": {"grey matter": 0.5, "white matter": 0.3, "cerebrospinal fluid": 1.0},
    "PD": {"grey matter": 0.8, "white matter": 0.6},      # CSF above or below tissue depending on TR (SPM's PD: below)
    "FLAIR": {"grey matter": 1.0, "white matter": 0.7, "cerebrospinal fluid": 0.0},
    "CT": {"grey matter": 1.0, "white matter": 0.7, "cerebrospinal fluid": 0.0},
    "PET": {"grey matter": 1.0, "white matter": 0.3, "cerebrospinal fluid": 0.0},
}


def brightness_matrix(modalities: list[str] | tuple[str, ...], class_names: list[str] | tuple[str, ...]
                      ) -> torch.Tensor:
    """`(M, G)` float64: expected relative brightness of class g in modality m (NaN where not in the table)."""
    out = torch.full((len(modalities), len(class_names)), math.nan, dtype=torch.float64)
    for i, modality in enumerate(modalities):
        table = TISSUE_BRIGHTNESS.get(modality, {})
        for j, name in enumerate(class_names):
            value = table.get(canonical_name(name))
            if value is not None:
                out[i, j] = value
    return out
