"""I/O round trips in every format, geometry checked against SimpleITK's own physical points."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from multimodalgen.io import read_label, read_volume, write_label, write_volume
from multimodalgen.io.sitk_bridge import LPS_TO_RAS, volume_to_sitk
from multimodalgen.volume import Volume

FORMATS = [".nii.gz", ".nii", ".nrrd", ".mha"]


def sitk_physical_ras(image, index) -> np.ndarray:
    lps = np.asarray(image.TransformIndexToPhysicalPoint([int(v) for v in index]))
    return np.array([-lps[0], -lps[1], lps[2]])


@pytest.mark.parametrize("suffix", FORMATS)
def test_roundtrip_keeps_values_and_affine(tmp_path, volume, suffix):
    path = tmp_path / f"img{suffix}"
    write_volume(volume, path)
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-4)
    # Independent check: SimpleITK's physical point of voxel (3, 5, 7) equals our affine's RAS point (LPS flipped).
    image = sitk.ReadImage(str(path))
    expected_ras = (back.affine @ np.array([3, 5, 7, 1.0]))[:3]
    np.testing.assert_allclose(sitk_physical_ras(image, (3, 5, 7)), expected_ras, atol=1e-4)
    # SimpleITK's array is (K, J, I): the same voxel value.
    assert sitk.GetArrayFromImage(image)[7, 5, 3] == volume.array[3, 5, 7]


def test_chain_nifti_nrrd_mha_nifti(tmp_path, volume):
    """The issue's acceptance: NIfTI -> NRRD -> MHA -> NIfTI keeps the affine to 1e-4 mm and values exactly."""
    current = tmp_path / "a.nii.gz"
    write_volume(volume, current)
    for suffix in (".nrrd", ".mha", ".nii.gz"):
        nxt = tmp_path / f"next{suffix}"
        write_volume(read_volume(current), nxt)
        current = nxt
    back = read_volume(current)
    np.testing.assert_array_equal(back.array, volume.array)
    assert np.abs(back.affine - volume.affine).max() < 1e-4


def test_lps_ras_convention(tmp_path):
    """A SimpleITK image with identity direction (LPS) has an affine whose x and y axes point to L and P."""
    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32))  # (K, J, I)
    image.SetSpacing((2.0, 3.0, 4.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    sitk.WriteImage(image, str(tmp_path / "lps.nrrd"))
    vol = read_volume(tmp_path / "lps.nrrd")
    assert vol.shape3d == (6, 5, 4)
    assert vol.orientation == "LPS"
    np.testing.assert_allclose(vol.affine[:3, 3], [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(vol.spacing, [2.0, 3.0, 4.0])
    np.testing.assert_allclose(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))


def test_vector_image_roundtrip(tmp_path, volume):
    channels = np.stack([volume.array, 2 * volume.array, -volume.array])
    multi = Volume(channels, volume.affine, "FEATURES")
    write_volume(multi, tmp_path / "f.nii.gz")
    back = read_volume(tmp_path / "f.nii.gz")
    assert back.array.shape == channels.shape
    np.testing.assert_array_equal(back.array, channels)
    assert volume_to_sitk(multi).GetNumberOfComponentsPerPixel() == 3


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".seg.nrrd"])
def test_label_roundtrip(tmp_path, label_volume, suffix):
    label_volume.metadata["segments"] = [{"label": 1, "name": "liver", "color": [1, 0, 0]},
                                         {"label": 2, "name": "tumour", "color": [0, 1, 0]}]
    path = tmp_path / f"lab{suffix}"
    write_label(label_volume, path)
    back = read_label(path)
    np.testing.assert_array_equal(back.array, label_volume.array)
    np.testing.assert_allclose(back.affine, label_volume.affine, atol=1e-4)
    if suffix == ".seg.nrrd":
        assert [s["name"] for s in back.metadata["segments"]] == ["liver", "tumour"]


def test_seg_nrrd_readable_by_slicerio_as_slicer_writes(tmp_path, label_volume):
    import slicerio

    write_label(label_volume, tmp_path / "s.seg.nrrd")
    seg = slicerio.read_segmentation(str(tmp_path / "s.seg.nrrd"))
    assert len(seg["segments"]) == 2
    np.testing.assert_allclose(np.asarray(seg["ijkToLPS"]), LPS_TO_RAS @ label_volume.affine, atol=1e-4)


def test_dicom_series_folder(tmp_path, volume):
    """A DICOM series written slice by slice by SimpleITK is read back as one volume with its geometry."""
    folder = tmp_path / "dicom"
    folder.mkdir()
    image = sitk.Cast(volume_to_sitk(Volume(volume.array.astype(np.int16), np.diag([0.8, 0.8, 2.0, 1.0]))),
                      sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        slice_.SetMetaData("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        slice_.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        slice_.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        slice_.SetMetaData("0020|0013", str(k))
        slice_.SetMetaData("0008|0060", "MR")
        writer.SetFileName(str(folder / f"s{k:03d}.dcm"))
        writer.Execute(slice_)
    back = read_volume(folder)
    assert back.shape3d == volume.shape3d
    np.testing.assert_allclose(back.spacing, [0.8, 0.8, 2.0], atol=1e-3)
    np.testing.assert_array_equal(back.array, volume.array.astype(np.int16))


def test_write_is_atomic_on_failure(tmp_path, volume, monkeypatch):
    """A failing write leaves neither a partial file under the final name nor a temporary file."""
    target = tmp_path / "out.nii.gz"
    import multimodalgen.io.writers as writers

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", boom)
    from multimodalgen.errors import UserInputError

    with pytest.raises(UserInputError, match="cannot write .*out.nii.gz: disk full"):
        writers.write_volume(volume, target)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_failed_overwrite(tmp_path, volume, monkeypatch):
    target = tmp_path / "out.nii.gz"
    write_volume(volume, target)
    before = target.read_bytes()
    monkeypatch.setattr(sitk, "WriteImage", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    from multimodalgen.errors import UserInputError

    with pytest.raises(UserInputError, match="cannot write"):
        write_volume(volume, target)
    assert target.read_bytes() == before


def test_outputs_get_normal_permissions(tmp_path, volume):
    """Atomic writes go through mkstemp (0600); the final file must follow the umask like any other output."""
    import os

    path = write_volume(volume, tmp_path / "perm.nii.gz")
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
