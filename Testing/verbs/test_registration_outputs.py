"""What a registration leaves behind is reusable by itself: `apply` reproduces warped.nii.gz from transform.h5,
inverse_transform.h5 undoes the forward map, warped.nii.gz keeps the fixed image's qform/sform codes, and
report.json records the version, models and options that produced it (issue 20, part 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multimodalgen.cli.main import main
from multimodalgen.errors import UserInputError
from multimodalgen.io import read_volume
from multimodalgen.verbs import run_verb


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    import nibabel as nib

    from blob_images import blobs as _blobs

    folder = tmp_path_factory.mktemp("reg")
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    shape = (24, 24, 16)
    fixed = nib.Nifti1Image(_blobs(shape, [(1.0, (12, 12, 8)), (0.5, (7, 15, 7))]), affine)
    fixed.set_qform(affine, code=1)
    fixed.set_sform(affine, code=4)  # MNI
    nib.save(fixed, str(folder / "fixed.nii.gz"))
    moving = nib.Nifti1Image(_blobs(shape, [(1.0, (14, 11, 9)), (0.5, (9, 14, 8))]), affine)
    nib.save(moving, str(folder / "moving.nii.gz"))
    run_verb("register", {"fixed": str(folder / "fixed.nii.gz"), "moving": str(folder / "moving.nii.gz"),
                          "overlay": False}, folder / "out")
    return folder


def test_apply_reproduces_warped_from_the_transform(registered, tmp_path):
    out = registered / "out"
    assert main(["--progress", "none", "apply", "--transform", str(out / "transform.h5"), "--moving",
                 str(registered / "moving.nii.gz"), "--reference", str(registered / "fixed.nii.gz"), "--out",
                 str(tmp_path / "again.nii.gz")]) == 0
    ours, again = read_volume(out / "warped.nii.gz").array, read_volume(tmp_path / "again.nii.gz").array
    value_range = float(ours.max() - ours.min())
    inner = (slice(3, -3),) * 3  # at the very border ITK and our sampler treat the field's edge differently
    assert np.abs(ours - again)[inner].max() < 0.01 * value_range
    assert np.mean(np.abs(ours - again)) < 0.01 * value_range
    filled = tmp_path / "filled.nii.gz"
    run_verb("apply", {"moving": str(registered / "moving.nii.gz"), "transform": str(out / "transform.h5"),
                       "reference": str(registered / "fixed.nii.gz"), "fill": -7.0}, filled)
    assert (read_volume(filled).array == -7.0).any()  # outside the moving field of view


def test_inverse_transform_undoes_the_forward_map(registered):
    import SimpleITK as sitk

    out = registered / "out"
    forward = sitk.ReadTransform(str(out / "transform.h5"))
    inverse = sitk.ReadTransform(str(out / "inverse_transform.h5"))
    fixed = sitk.ReadImage(str(registered / "fixed.nii.gz"))
    rng = np.random.default_rng(0)
    errors = []
    for index in rng.integers([3, 3, 2], [21, 21, 14], size=(200, 3)):
        x = fixed.TransformIndexToPhysicalPoint([int(v) for v in index])
        errors.append(np.linalg.norm(np.subtract(inverse.TransformPoint(forward.TransformPoint(x)), x)))
    assert np.median(errors) < 0.5, np.median(errors)


def test_warped_keeps_the_fixed_codes_and_report_records_provenance(registered):
    import nibabel as nib

    import multimodalgen

    header = nib.load(str(registered / "out" / "warped.nii.gz")).header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 4)
    report = json.loads((registered / "out" / "report.json").read_text())
    provenance = report["provenance"]
    assert provenance["version"] == multimodalgen.__version__
    assert provenance["options"]["mode"] == "deformable" and provenance["options"]["preset"] == "fast"
    if report["features"]["kind"] == "mind+encoder":
        assert len(provenance["models"]["encoder"]["sha256"]) == 64
    assert "inverse_transform.h5" in report["outputs"]


def test_apply_refuses_a_file_that_is_not_a_transform(registered, tmp_path):
    with pytest.raises(UserInputError, match="cannot read the transform"):
        run_verb("apply", {"moving": str(registered / "moving.nii.gz"), "transform": str(registered / "fixed.nii.gz"),
                           "reference": str(registered / "fixed.nii.gz")}, tmp_path / "x.nii.gz")
    assert not (tmp_path / "x.nii.gz").exists()
