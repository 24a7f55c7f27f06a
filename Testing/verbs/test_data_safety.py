"""Nothing lost: outputs never replace inputs, failed writes leave nothing, labels keep their values, manifest names
cannot leave the output folder, and damaged files end in one clear error (issue 21)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from multimodalgen.cli.main import main
from multimodalgen.errors import UserInputError
from multimodalgen.io import read_label, read_volume, write_label, write_volume
from multimodalgen.volume import Volume

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in.nii.gz"
    write_volume(Volume(rng.normal(100, 10, (24, 20, 16)).astype(np.float32), np.diag([1.5, 1.5, 2.0, 1]), "T1"),
                 path)
    return path


def _refused(argv, capsys, *paths, why="would overwrite the input"):
    before = {p: p.read_bytes() for p in paths}
    assert main(["--progress", "none", *argv]) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1 and "Traceback" not in err
    assert all(p.read_bytes() == data for p, data in before.items())


def test_outputs_that_resolve_to_an_input_are_refused(image, tmp_path, capsys):
    _refused(["convert", str(image), str(image)], capsys, image)
    _refused(["features", "--image", str(image), "--out", str(image)], capsys, image)
    _refused(["segment", "--image", f"T1={image}", "--out", str(image)], capsys, image)
    link = tmp_path / "link.nii.gz"
    link.symlink_to(image)
    _refused(["convert", str(image), str(link)], capsys, image)
    hard = tmp_path / "hard.nii.gz"
    os.link(image, hard)
    _refused(["convert", str(hard), str(image)], capsys, image)
    out = tmp_path / "reg"
    out.mkdir()
    moving = out / "warped.nii.gz"
    moving.write_bytes(image.read_bytes())
    _refused(["register", "--fixed", str(image), "--moving", str(moving), "--out-dir", str(out)], capsys, moving,
             why="contains the input")


def test_a_full_disk_leaves_no_output_and_exits_2(tmp_path):
    image = tmp_path / "in.nii.gz"  # ~1 MB of noise: more than the 64 KiB the writes may use
    write_volume(Volume(np.random.default_rng(1).normal(size=(64, 64, 64)).astype(np.float32), np.eye(4), "T1"),
                 image)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    for name in ("out.nii.gz", "out.nii", "out.nrrd", "out.mha"):
        done = subprocess.run([sys.executable, "-m", "multimodalgen.cli.main", "convert", str(image),
                               str(tmp_path / name)], preexec_fn=limit, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT / "MultiModalGen")), timeout=120)
        assert done.returncode == 2, (name, done.stderr)
        assert "cannot write" in done.stderr and "Traceback" not in done.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"], name  # no output, no temporary file


def test_large_label_values_are_kept(tmp_path):
    labels = np.zeros((6, 5, 4), np.int64)
    labels[0, 0, 0], labels[1, 1, 1] = 2 ** 32 + 1, 1
    write_label(Volume(labels, np.eye(4), "LABEL"), tmp_path / "big.nii.gz")
    assert main(["--progress", "none", "convert", "--label", str(tmp_path / "big.nii.gz"),
                 str(tmp_path / "out.nrrd")]) == 0
    assert sorted(np.unique(read_label(tmp_path / "out.nrrd").array).tolist()) == [0, 1, 2 ** 32 + 1]
    with pytest.raises(UserInputError, match="above 2"):
        from multimodalgen.volume import check_label_array

        check_label_array(np.array([0.0, 3e9]))


def test_a_seg_nrrd_without_segment_metadata_is_a_plain_label_map(tmp_path):
    import SimpleITK as sitk

    values = np.zeros((4, 5, 6), np.uint8)
    values[1:3, 1:3, 1:3], values[3, 4, 5] = 3, 7
    sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / "plain.seg.nrrd"))
    label = read_label(tmp_path / "plain.seg.nrrd")
    assert sorted(np.unique(label.array).tolist()) == [0, 3, 7] and int((label.array == 3).sum()) == 8
    assert [s["name"] for s in label.metadata["segments"]] == ["Segment_3", "Segment_7"]


def test_manifest_names_cannot_leave_the_output_folder(image, tmp_path):
    from multimodalgen.batch import run

    (tmp_path / "S.csv").write_text(f"study_id,../../../escaped_col\ns1,{image}\n")
    with pytest.raises(UserInputError, match="escaped_col.*header row"):
        run(tmp_path / "S.csv", "resample", tmp_path / "out", workers=0)
    (tmp_path / "S2.csv").write_text(f"study_id,image\n..,{image}\n")
    with pytest.raises(UserInputError, match="study_id"):
        run(tmp_path / "S2.csv", "resample", tmp_path / "out", workers=0)
    assert not any(tmp_path.parent.glob("escaped_col*")) and not (tmp_path / "out").exists()


def test_headers_cannot_point_at_other_files(tmp_path):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes(64))
    (tmp_path / "up").mkdir()
    header = tmp_path / "up" / "x.mhd"
    header.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
                      "ElementDataFile = ../secret.raw\n")
    with pytest.raises(UserInputError, match="not a file beside it"):
        read_volume(header)
    nrrd = tmp_path / "up" / "x.nhdr"
    nrrd.write_text(f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: {secret}\n\n")
    with pytest.raises(UserInputError, match="not a file beside it"):
        read_volume(nrrd)


def test_damaged_files_end_in_one_clear_error():
    """The fuzz run of the readers (benchmarks/io/fuzz_readers.py): truncated and bit-flipped NIfTI, NRRD, MHA,
    .seg.nrrd and DICOM files; every one is read or refused in one line, none crashes, hangs or leaks another error."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "io" / "fuzz_readers.py"), "--cases", "40"],
                          capture_output=True, text=True, timeout=300)
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"fuzz: {result['tried']} inputs tried, {result['held']} held "
          f"({result['read_ok']} read, {result['refused']} refused)")
    assert done.returncode == 0 and result["tried"] == 240 and result["held"] == 240, result["failures"]
