"""Plausibility checks of tissue segmentations (`personalized.quality`)."""

from __future__ import annotations

import numpy as np

from multimodalgen.personalized.quality import check_segmentation

NAMES = {0: "background", 1: "grey matter", 2: "white matter", 3: "cerebrospinal fluid"}


def _labels(gm: int, wm: int, csf: int) -> np.ndarray:
    flat = np.zeros(40 * 40 * 40, np.uint8)
    flat[:gm] = 1
    flat[gm:gm + wm] = 2
    flat[gm + wm:gm + wm + csf] = 3
    return np.pad(flat.reshape(40, 40, 40), 2)                          # a background margin: the brain is not cut


def _confident(labels: np.ndarray, p: float) -> np.ndarray:
    """The winning class's probability per voxel: `p` everywhere."""
    return np.full(labels.shape, p, np.float32)


def test_plausible_brain_passes_with_volumes_in_ml():
    labels = _labels(20000, 16000, 6000)
    out = check_segmentation(labels, _confident(labels, 0.9), 0.01, NAMES)                     # 10 uL voxels
    assert out["warnings"] == []
    assert out["volumes_ml"] == {"grey matter": 200.0, "white matter": 160.0, "cerebrospinal fluid": 60.0}
    assert out["confidence"] == 0.9


def test_rings_no_brain_and_low_confidence_are_flagged():
    rings = _labels(10000, 8000, 40000)                                # CSF 69 %: the phantom model's rings
    out = check_segmentation(rings, _confident(rings, 0.9), 0.01, NAMES)
    assert len(out["warnings"]) == 1 and "implausible tissue proportions" in out["warnings"][0]
    white_heavy = _labels(20000, 36000, 6000)                           # WM/GM 1.8
    too_big = _labels(10000, 9000, 3000)                                # 2640 mL of "brain" with 0.12 mL voxels
    for labels, voxel_ml in ((white_heavy, 0.01), (too_big, 0.12)):
        out = check_segmentation(labels, None, voxel_ml, NAMES)
        assert len(out["warnings"]) == 1 and "implausible tissue proportions" in out["warnings"][0]
    assert check_segmentation(too_big, None, 0.1, NAMES)["warnings"] == []    # 2200 mL: an MNI-space head (SPM's 1967)
    empty = _labels(100, 100, 0)
    assert "only 2 mL" in check_segmentation(empty, None, 0.01, NAMES)["warnings"][0]
    unsure = _labels(20000, 16000, 6000)
    warnings = check_segmentation(unsure, _confident(unsure, 0.4), 0.01, NAMES)["warnings"]
    assert len(warnings) == 1 and "low confidence (mean 0.40" in warnings[0]


def test_segmentations_without_brain_classes_are_not_judged():
    out = check_segmentation(np.ones((4, 4, 4), np.uint8), None, 1.0, {0: "background", 1: "liver"})
    assert out == {"volumes_ml": {"liver": 64.0}, "confidence": None, "warnings": []}


def test_a_field_of_view_that_cuts_the_brain_is_flagged():
    whole = _labels(20000, 16000, 6000)
    assert check_segmentation(whole, None, 0.01, NAMES)["warnings"] == []
    cut = whole[:, :, 10:]                                              # the first slabs are brain: a cut brain
    warnings = check_segmentation(cut, None, 0.01, NAMES)["warnings"]
    assert len(warnings) == 1 and "of the first slice along voxel axis 2" in warnings[0]
    brain_stem = whole.copy()
    brain_stem[20:24, 20:24, :3] = 1                                    # a little tissue on a face is normal
    assert check_segmentation(brain_stem, None, 0.01, NAMES)["warnings"] == []
    slab = whole[:, :, 20:22]                                           # a 2-slice slab has no faces to judge
    assert not any("field of view" in w for w in check_segmentation(slab, None, 0.01, NAMES)["warnings"])
