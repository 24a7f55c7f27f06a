"""Every bad input named by the foundation issue gets a clear UserInputError (expected / got / fix)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from multimodalgen.errors import ResourceError, UserInputError
from multimodalgen.io import read_label, read_volume, write_volume
from multimodalgen.io.memory import check_fits_in_memory
from multimodalgen.volume import Volume, check_not_constant, require_same_grid


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="file not found"):
        read_volume(tmp_path / "nope.nii.gz")


def test_empty_file(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(UserInputError, match="empty"):
        read_volume(tmp_path / "empty.nii.gz")


def test_corrupt_file(tmp_path, volume):
    path = tmp_path / "c.nii.gz"
    write_volume(volume, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # truncated gzip
    with pytest.raises(UserInputError, match="cannot read"):
        read_volume(path)


def test_garbage_file(tmp_path):
    (tmp_path / "g.nrrd").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(UserInputError, match="cannot read"):
        read_volume(tmp_path / "g.nrrd")


def test_2d_image(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 9), np.float32)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(UserInputError, match="2D"):
        read_volume(tmp_path / "flat.nii.gz")


def test_4d_image(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 3), np.float32), np.eye(4)), str(tmp_path / "t.nii.gz"))
    with pytest.raises(UserInputError, match="4D"):
        read_volume(tmp_path / "t.nii.gz")


def test_multicomponent_refused_where_scalar_needed(tmp_path, volume):
    write_volume(Volume(np.stack([volume.array] * 3), volume.affine), tmp_path / "v.nii.gz")
    with pytest.raises(UserInputError, match="components"):
        read_volume(tmp_path / "v.nii.gz", allow_channels=False)
    with pytest.raises(UserInputError, match="components"):
        read_label(tmp_path / "v.nii.gz")


def test_nan_inf(tmp_path, volume):
    array = volume.array.copy()
    array[1, 2, 3] = np.nan
    array[2, 2, 3] = np.inf
    write_volume(volume.with_array(array), tmp_path / "n.nii.gz")
    with pytest.raises(UserInputError, match="NaN or Inf.*2 non-finite"):
        read_volume(tmp_path / "n.nii.gz")
    assert np.isnan(read_volume(tmp_path / "n.nii.gz", allow_nonfinite=True).array[1, 2, 3])


def test_constant_image(volume):
    with pytest.raises(UserInputError, match="constant"):
        check_not_constant(volume.with_array(np.full(volume.shape3d, 7.0)))


def test_zero_size():
    with pytest.raises(UserInputError, match="empty"):
        Volume(np.zeros((0, 4, 4)), np.eye(4))


def test_non_orthogonal_direction(tmp_path):
    image = sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32))
    image.SetDirection((1, 0, 0, 0.5, 0.866, 0, 0, 0, 1))  # sheared: columns not orthogonal
    sitk.WriteImage(image, str(tmp_path / "shear.nrrd"))
    with pytest.raises(UserInputError, match="not orthogonal"):
        read_volume(tmp_path / "shear.nrrd")


def test_non_integer_labels(tmp_path, volume):
    write_volume(volume.with_array(np.full(volume.shape3d, 0.5, np.float32)), tmp_path / "l.nii.gz")
    with pytest.raises(UserInputError, match="non-integer"):
        read_label(tmp_path / "l.nii.gz")


def test_integer_valued_float_labels_accepted(tmp_path, label_volume):
    write_volume(label_volume.with_array(label_volume.array.astype(np.float32)), tmp_path / "l.nii.gz")
    assert read_label(tmp_path / "l.nii.gz").array.dtype == np.uint8


def test_negative_labels(tmp_path, label_volume):
    write_volume(label_volume.with_array(-label_volume.array.astype(np.int16)), tmp_path / "l.nii.gz")
    with pytest.raises(UserInputError, match="negative"):
        read_label(tmp_path / "l.nii.gz")


def test_different_grids_never_silent(volume):
    other = Volume(volume.array[:-1], volume.affine)
    with pytest.raises(UserInputError, match="not on the reference image's grid.*resample it explicitly"):
        require_same_grid(volume, other, "the label map")


def test_absurd_size_refused_with_estimate():
    with pytest.raises(ResourceError, match=r"estimated 2000\.0 GiB"):
        check_fits_in_memory(2000 * 1024 ** 3, "reading huge.nii", available=16 * 1024 ** 3)


def test_absurd_size_header_refused_before_reading(tmp_path, monkeypatch):
    """The reader estimates from the header only and refuses before allocating anything."""
    write_volume(Volume(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "x.nrrd")
    import multimodalgen.io.readers as readers

    monkeypatch.setattr(readers, "_read_header", lambda source: ([4000, 4000, 4000], 1, 3))
    with pytest.raises(ResourceError, match="would not fit in memory"):
        readers.read_volume(tmp_path / "x.nrrd")


def test_error_message_has_expected_got_fix():
    err = UserInputError("bad thing", expected="A", got="B", fix="do C")
    assert str(err) == "bad thing; expected A; got B; fix: do C."
