"""`register --outputs`: the user chooses what is written; files are compact (compressed, quantised fields, coarse
field grid for fine fixed images); report.json holds timings per phase, bytes written and the I/O share (issue 25)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from registration_helpers import grid_affine, render

from multimodalgen.errors import UserInputError


def test_select_outputs_defaults_all_and_errors():
    from multimodalgen.registration.outputs import DEFAULT_OUTPUTS, OUTPUT_FILES, select_outputs

    assert "displacement" not in DEFAULT_OUTPUTS
    assert select_outputs(None, has_labels=False) == ("transform", "inverse", "warped", "overlay", "report")
    assert "warped_labels" in select_outputs("default", has_labels=True)
    assert select_outputs("all", has_labels=True) == tuple(OUTPUT_FILES)
    assert select_outputs("default,displacement", has_labels=False)[:3] == ("transform", "inverse", "displacement")
    assert select_outputs(["report", "transform"], has_labels=False) == ("transform", "report")
    assert "overlay" not in select_outputs(None, has_labels=False, overlay=False)
    assert "warped" not in select_outputs(None, has_labels=False, resample=False)
    with pytest.raises(UserInputError, match="unknown registration output 'field'"):
        select_outputs("transform,field", has_labels=False)
    with pytest.raises(UserInputError, match="needs moving labels"):
        select_outputs("warped_labels", has_labels=False)
    with pytest.raises(UserInputError, match="no registration output"):
        select_outputs(" , ", has_labels=False)


@pytest.fixture(scope="module")
def fine_pair(tmp_path_factory):
    """A 1 mm fixed image (finer than the 2 mm working grid) and an int16 moving image shifted by 3 mm."""
    from multimodalgen.io import write_volume

    folder = tmp_path_factory.mktemp("outputs")
    shape = (44, 48, 40)
    fixed = render(shape, grid_affine(shape, 1.0))
    shift = np.eye(4)
    shift[:3, 3] = [3.0, -2.0, 1.0]
    moving = render(shape, grid_affine(shape, 1.0), np.linalg.inv(shift), head=1.0, blobs=-0.8)
    moving = moving.with_array(np.rint(moving.array * 1000).astype(np.int16))
    write_volume(fixed, folder / "fixed.nii.gz")
    write_volume(moving, folder / "moving.nii.gz")
    return folder


def test_cli_outputs_transform_and_report_only(fine_pair, capsys):
    from multimodalgen.cli.main import main

    out = fine_pair / "only"
    code = main(["--progress", "none", "register", "--fixed", str(fine_pair / "fixed.nii.gz"), "--moving",
                 str(fine_pair / "moving.nii.gz"), "--outputs", "transform,report", "--out-dir", str(out)])
    capsys.readouterr()
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "transform.h5"]
    report = json.loads((out / "report.json").read_text())
    assert report["outputs"] == ["report.json", "transform.h5"]
    assert report["bytes_written"] == (out / "transform.h5").stat().st_size
    timings = report["timings_s"]
    for phase in ("import_torch", "read", "prepare", "features", "linear", "deformable", "export", "write",
                  "end_to_end_in_process"):
        assert timings[phase] >= 0.0, phase
    assert 0.0 < report["io_share"] < 1.0
    assert report["io_share"] == pytest.approx((timings["read"] + timings["write"])
                                               / timings["end_to_end_in_process"], abs=0.002)
    assert report["provenance"]["options"]["outputs"] == ["transform", "report"]


def test_default_outputs_are_compact_and_consistent(fine_pair):
    import h5py
    import nibabel as nib
    import SimpleITK as sitk

    from multimodalgen.registration import register_files
    from multimodalgen.registration.outputs import FIELD_QUANTUM_MM

    out = fine_pair / "default"
    result = register_files(fine_pair / "fixed.nii.gz", fine_pair / "moving.nii.gz", out, outputs="default,displacement")
    assert set(result.outputs) == {"transform", "inverse", "displacement", "warped", "overlay", "report"}
    report = json.loads((out / "report.json").read_text())
    # the field of a 1 mm fixed image is stored at the deformable stage's 4 mm resolution
    assert report["field_grid"]["spacing_mm"] == [4.0, 4.0, 4.0]
    with h5py.File(out / "transform.h5", "r") as f:
        params = f["TransformGroup/2/TransformParameters"]
        assert params.compression == "gzip" and params.shuffle
        values = params[()]
    np.testing.assert_allclose(values / FIELD_QUANTUM_MM, np.rint(values / FIELD_QUANTUM_MM), atol=1e-6)
    assert sitk.ReadTransform(str(out / "transform.h5")).GetName() == "CompositeTransform"
    disp = nib.load(str(out / "displacement.nii.gz"))
    assert disp.get_data_dtype() == np.float32
    warped = nib.load(str(out / "warped.nii.gz"))
    assert warped.get_data_dtype() == np.int16  # the moving image's integer type
    assert report["bytes_written"] == sum(p.stat().st_size for p in out.iterdir() if p.name != "report.json")
    assert report["similarity_after"] < report["similarity_before"]


def test_bad_outputs_fail_before_any_work_with_exit_2(fine_pair, capsys):
    from multimodalgen.cli.main import main

    out = fine_pair / "bad"
    for outputs in ("transform,field", "warped_labels"):
        code = main(["--progress", "none", "register", "--fixed", str(fine_pair / "fixed.nii.gz"), "--moving",
                     str(fine_pair / "moving.nii.gz"), "--outputs", outputs, "--out-dir", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())
