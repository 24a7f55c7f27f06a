"""Bad inputs fail early with one clear UserInputError; identical images return identity quickly."""

from __future__ import annotations

import time

import numpy as np
import pytest
from registration_helpers import grid_affine, render


@pytest.fixture
def fixed():
    return render((24, 26, 22), grid_affine((24, 26, 22), 2.5))


def test_identical_images_give_identity_quickly(fixed):
    from multimodalgen.registration import register_volumes

    t0 = time.perf_counter()
    result = register_volumes(fixed, fixed.with_array(fixed.array.copy()))
    assert time.perf_counter() - t0 < 1.0
    assert result.displacement is None
    np.testing.assert_array_equal(result.affine, np.eye(4))


def test_no_overlap_with_init_none_suggests_the_init_option(fixed):
    from multimodalgen.errors import UserInputError
    from multimodalgen.registration import register_volumes

    far = fixed.affine.copy()
    far[:3, 3] += [500.0, 0.0, 0.0]
    moving = fixed.with_array(fixed.array.copy())
    moving.affine = far
    with pytest.raises(UserInputError, match="do not overlap.*--init"):
        register_volumes(fixed, moving, init="none", mode="rigid")
    # the default initialisation (centres of mass) brings far-apart headers together
    result = register_volumes(fixed, moving, mode="rigid")
    assert abs(result.affine[0, 3] - 500.0) < 2.0


def test_two_dimensional_and_empty_mask_and_constant_inputs(tmp_path, fixed):
    import SimpleITK as sitk

    from multimodalgen.errors import UserInputError
    from multimodalgen.io import write_label, write_volume
    from multimodalgen.registration import register_files, register_volumes
    from multimodalgen.volume import Volume

    sitk.WriteImage(sitk.GetImageFromArray(np.random.rand(20, 20).astype(np.float32)), str(tmp_path / "2d.nii.gz"))
    write_volume(fixed, tmp_path / "f.nii.gz")
    with pytest.raises(UserInputError, match="2D"):
        register_files(tmp_path / "f.nii.gz", tmp_path / "2d.nii.gz", tmp_path / "out")
    write_label(Volume(np.zeros(fixed.shape3d, np.uint8), fixed.affine, "LABEL"), tmp_path / "empty.nii.gz")
    with pytest.raises(UserInputError, match="fixed mask is empty"):
        register_files(tmp_path / "f.nii.gz", tmp_path / "f.nii.gz", tmp_path / "out", fixed_mask=tmp_path / "empty.nii.gz")
    with pytest.raises(UserInputError, match="constant"):
        register_volumes(fixed, fixed.with_array(np.ones(fixed.shape3d, np.float32)))
    with pytest.raises(UserInputError, match="too thin"):
        register_volumes(fixed, Volume(np.random.rand(20, 20, 2).astype(np.float32), np.eye(4)))
    with pytest.raises(UserInputError, match="unknown registration mode"):
        register_volumes(fixed, fixed, mode="elastic")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_very_different_resolutions(fixed):
    """A 1 mm fixed image against a 4 mm moving image: working grids are chosen and reported explicitly."""
    from multimodalgen.registration import register_volumes

    fine = render((56, 64, 50), grid_affine((56, 64, 50), 1.1))
    t = np.eye(4)
    t[:3, 3] = [2.0, -3.0, 1.0]
    coarse = render((18, 20, 16), grid_affine((18, 20, 16), 4.0), np.linalg.inv(t), head=1.0, blobs=-0.8)
    result = register_volumes(fine, coarse, mode="rigid")
    assert result.report["working_grid"]["spacing_mm"] == 2.0
    assert "moving" in result.report["moving_working_grid"]["reason"]
    np.testing.assert_allclose(result.affine[:3, 3], t[:3, 3], atol=1.0)


def test_cli_reports_bad_input_in_one_line_with_exit_code_2(tmp_path, capsys, fixed):
    from multimodalgen.cli.main import main
    from multimodalgen.io import write_volume

    write_volume(fixed, tmp_path / "f.nii.gz")
    code = main(["--progress", "none", "register", "--fixed", str(tmp_path / "f.nii.gz"), "--moving",
                 str(tmp_path / "missing.nii.gz"), "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "missing.nii.gz" in err
