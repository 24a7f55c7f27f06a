"""Slice detection and validation of the painting."""

from __future__ import annotations

import numpy as np
import pytest

from fewshot_helpers import make_case, paint
from multimodalgen.errors import UserInputError
from multimodalgen.fewshot.annotations import default_axis, find_annotations


def test_default_axis_coarsest_then_superior_inferior():
    assert default_axis(np.diag([1.0, 1.0, 3.0, 1.0])) == 2
    assert default_axis(np.diag([0.8, 5.0, 0.8, 1.0])) == 1
    # isotropic, axes permuted: index axis 0 points superior
    iso = np.zeros((4, 4))
    iso[2, 0] = iso[0, 1] = iso[1, 2] = iso[3, 3] = 1.0
    assert default_axis(iso) == 0


def test_every_painted_slice_is_annotated():
    _, truth, affine = make_case()
    ann = find_annotations(paint(truth, [3, 5, 8]), affine)
    assert ann.primary_axis == 2
    assert ann.slices[0].indices == (3, 5, 8)
    assert ann.labels == (1, 2)
    known = ann.known_mask()
    assert known[:, :, [3, 5, 8]].all() and not known[:, :, [0, 4, 9]].any()
    classes = ann.class_map()
    assert (classes[:, :, 5][truth[:, :, 5] == 0] == 0).all()  # unpainted voxels of a painted slice = background
    assert (classes[:, :, 4] == -1).all()


def test_axis_detected_from_painting_when_not_default():
    _, truth, affine = make_case()
    ann = find_annotations(paint(truth, [10, 14], axis=0), affine)
    assert ann.primary_axis == 0 and ann.slices[0].indices == (10, 14)
    assert ann.notes and "axis 0" in ann.notes[0]


def test_several_axes():
    _, truth, affine = make_case()
    painting = np.maximum(paint(truth, [4, 7], axis=2), paint(truth, [12], axis=0))
    ann = find_annotations(painting, affine, axis=(2, 0))
    axes = {s.axis: s.indices for s in ann.slices}
    assert axes[2] == (4, 7) and axes[0] == (12,)
    assert ann.known_mask()[12].all()


def test_no_painted_voxel():
    with pytest.raises(UserInputError, match="no painted voxel"):
        find_annotations(np.zeros((5, 5, 5), np.uint8), np.eye(4))


def test_labels_outside_requested_set():
    _, truth, affine = make_case()
    with pytest.raises(UserInputError, match="not requested"):
        find_annotations(paint(truth, [5]), affine, labels=[1])


def test_requested_label_never_painted():
    _, truth, affine = make_case()
    with pytest.raises(UserInputError, match="never painted"):
        find_annotations(paint(truth, [5], labels=[1]), affine, labels=[1, 2])


def test_label_painted_on_every_slice():
    _, truth, affine = make_case()
    full = np.zeros_like(truth)
    full[10:14, 10:14, :] = 1
    with pytest.raises(UserInputError, match="every slice"):
        find_annotations(full, affine, axis=2)


def test_invalid_axis():
    _, truth, affine = make_case()
    with pytest.raises(UserInputError, match="slice axis"):
        find_annotations(paint(truth, [5]), affine, axis=3)
