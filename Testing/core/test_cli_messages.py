"""What the user reads: one success sentence per verb (JSON only with --progress json), outputs checked for
writability before any computation (one line, exit 2, nothing written), `info` on any image (2D, one DICOM slice),
and DICOM objects that are not images refused with what they are and what to do."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from multimodalgen.cli.main import main
from multimodalgen.io import write_label, write_volume
from multimodalgen.verbs import Result
from multimodalgen.verbs.messages import success_sentence
from multimodalgen.verbs.registry import VERBS

#: A plausible Result of each verb (the fields its driver fills), to check every verb has a sentence.
SAMPLE_RESULTS = {
    "register": Result({"transform": Path("o/transform.h5"), "report": Path("o/report.json")},
                       {"mode": "deformable", "similarity_before": 0.4, "similarity_after": 0.1,
                        "jacobian": {"nonpositive_fraction": 0.0}, "dice": {"dice_mean": 0.84}},
                       {"end_to_end_in_process": 8.2}),
    "segment": Result({"labels": Path("s.nii.gz")}, {"segments": [{"label": 1, "name": "grey matter"}],
                                                       "modalities": ["T1"], "adapter": "none"}, {"segment": 1.0}),
    "fewshot": Result({"labels": Path("f.nii.gz")}, {"labels": [1, 2], "notes": ["resampled"]}, {"fewshot": 2.0}),
    "finetune": Result({"adapter": Path("a")}, {"adapter_name": "a", "cases": 3, "size_bytes": 87000}, {"t": 9.0}),
    "features": Result({"features": Path("f.nii.gz")}, {"channels": 16, "shape": [16, 8, 8, 8]}, {"t": 1.0}),
    "convert": Result({"output": Path("c.nrrd")}, {"shape": [8, 8, 8], "spacing_mm": [1.0, 1.0, 2.0]}, {"t": 0.1}),
    "apply": Result({"warped": Path("w.nii.gz")}, {"shape": [8, 8, 8], "inverse": False}, {"t": 0.2}),
    "resample": Result({"T1": Path("r/T1.nii.gz")}, {}, {"t": 0.3}),
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_one_success_sentence(verb):
    out = "/data/out/result"
    line = success_sentence(verb, SAMPLE_RESULTS[verb], out)
    assert "\n" not in line and "{" not in line, line
    assert line.startswith(f"{verb}: wrote") and out in line and line.endswith((".", ".)")), line
    assert any(ch.isdigit() for ch in line.replace(out, "")), f"no headline number in {line!r}"


def test_register_sentence_names_files_and_numbers():
    line = success_sentence("register", SAMPLE_RESULTS["register"], "out")
    assert "transform.h5" in line and "0.400 -> 0.100" in line and "0.840" in line and "8.2 s" in line


def test_segment_sentence_has_volumes_and_confidence():
    result = Result({"labels": Path("s.nii.gz")}, {"segments": [{"label": 1, "name": "grey matter"}],
                                                    "modalities": ["T1", "T2"], "adapter": "none",
                                                    "volumes_ml": {"grey matter": 612.4}, "confidence": 0.81},
                    {"segment": 2.0})
    line = success_sentence("segment", result, "seg.nii.gz")
    assert "grey matter 612 mL" in line and "confidence 0.81" in line and "T1, T2" in line
    result.metrics["atlas"] = {"source": "TPM.nii", "weight": 4.0, "brain_agreement": 0.953}
    line = success_sentence("segment", result, "seg.nii.gz")
    assert "atlas TPM.nii at weight 4, brain agreement 0.95" in line and "confidence 0.81" in line


def test_demo_sentence_has_the_engines_headline_numbers():
    from multimodalgen.demo import _sentence

    summary = {"steps": {
        "io": {"status": "done", "outputs": ["io/a.png", "io/b.nii.gz"]},
        "registration": {"status": "done", "outputs": ["registration/overlay.png"],
                         "metrics": {"transform_error_mean_mm": 0.934, "identity_error_mean_mm": 7.784}},
        "fewshot": {"status": "done", "outputs": ["fewshot/t.png"], "metrics": {"dice_unpainted_slices": 0.7401}},
        "personalized": {"status": "not available", "reason": "no model"}}}
    line = _sentence(summary, Path("demo_output"))
    assert line.startswith("demo: wrote the results of 3/4 steps") and "3 figures to demo_output" in line
    assert "0.93 mm" in line and "Dice 0.740" in line and "\n" not in line


def test_convert_prints_a_sentence_and_json_only_with_progress_json(tmp_path, volume, capsys):
    write_volume(volume, tmp_path / "v.nii.gz")
    assert main(["--progress", "none", "convert", str(tmp_path / "v.nii.gz"), str(tmp_path / "c.nrrd")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert: wrote") and str(tmp_path / "c.nrrd") in lines[0]
    assert "x".join(str(s) for s in volume.shape3d) in lines[0]
    assert main(["--progress", "json", "convert", str(tmp_path / "v.nii.gz"), str(tmp_path / "d.nrrd")]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert events[-1]["event"] == "result" and events[-1]["outputs"]["output"] == str(tmp_path / "d.nrrd")


def _driver_must_not_run(monkeypatch):
    import multimodalgen.verbs.registry as registry

    def fail(verb):
        raise AssertionError(f"the driver of {verb.name} ran although its output cannot be written")

    monkeypatch.setattr(registry, "load_driver", fail)


@pytest.mark.parametrize("verb_args", [
    lambda d, bad: ["convert", str(d / "v.nii.gz"), str(bad / "c.nii.gz")],
    lambda d, bad: ["register", "--fixed", str(d / "v.nii.gz"), "--moving", str(d / "v.nii.gz"), "--out-dir",
                    str(bad / "reg")],
    lambda d, bad: ["segment", "--image", f"T1={d / 'v.nii.gz'}", "--out", str(bad / "s.nii.gz")],
    lambda d, bad: ["fewshot", "--image", str(d / "v.nii.gz"), "--annotations", str(d / "a.nii.gz"), "--out",
                    str(bad / "f.nii.gz")],
    lambda d, bad: ["features", "--image", str(d / "v.nii.gz"), "--out", str(bad / "x" / "f.nii.gz")],
])
def test_unwritable_output_is_one_line_exit_2_before_computation(tmp_path, volume, label_volume, verb_args,
                                                                  monkeypatch, capsys):
    write_volume(volume, tmp_path / "v.nii.gz")
    write_label(label_volume, tmp_path / "a.nii.gz")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is needed")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    _driver_must_not_run(monkeypatch)
    assert main(["--progress", "none", *verb_args(tmp_path, blocker)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "is a file, not a folder" in err[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_output_folder_without_write_permission_is_refused_first(tmp_path, volume, monkeypatch, capsys):
    """The write probe fails (as on a read-only disk or a folder without permission; the tests may run as root, so
    the failure is simulated at the probe)."""
    import multimodalgen.verbs.output_policy as policy

    write_volume(volume, tmp_path / "v.nii.gz")
    (tmp_path / "ro").mkdir()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(policy.tempfile, "mkstemp", read_only)
    _driver_must_not_run(monkeypatch)
    assert main(["--progress", "none", "convert", str(tmp_path / "v.nii.gz"), str(tmp_path / "ro" / "c.nrrd")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write into" in err[0] and "Permission denied" in err[0]
    assert list((tmp_path / "ro").iterdir()) == []


def test_file_output_that_is_a_folder_is_refused(tmp_path, volume, monkeypatch, capsys):
    write_volume(volume, tmp_path / "v.nii.gz")
    (tmp_path / "dir.nii.gz").mkdir()
    _driver_must_not_run(monkeypatch)
    assert main(["convert", str(tmp_path / "v.nii.gz"), str(tmp_path / "dir.nii.gz")]) == 2
    assert "is an existing folder" in capsys.readouterr().err


def test_writable_check_leaves_nothing_and_creates_no_folder(tmp_path, volume):
    from multimodalgen.verbs.output_policy import check_outputs_writable

    check_outputs_writable(tmp_path / "new" / "deeper", VERBS["register"], {})
    check_outputs_writable(tmp_path / "out.nii.gz", VERBS["segment"], {})
    assert list(tmp_path.iterdir()) == []


def test_info_describes_a_2d_image(tmp_path, capsys):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.arange(30 * 20, dtype=np.int16).reshape(20, 30))  # 30 wide, 20 high
    image.SetSpacing((0.5, 0.7))
    sitk.WriteImage(image, str(tmp_path / "slice.nrrd"))
    assert main(["info", str(tmp_path / "slice.nrrd")]) == 0
    text = capsys.readouterr().out
    assert "[30, 20, 1]" in text and "2D image" in text and "need a 3D volume" in text
    assert main(["info", "--json", str(tmp_path / "slice.nrrd")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dimensions"] == 2 and summary["spacing_mm"][:2] == [0.5, 0.7] and summary["max"] == 599


def test_info_describes_a_single_slice_dicom_file_engines_still_refuse_it(tmp_path, capsys):
    import SimpleITK as sitk

    from multimodalgen.errors import UserInputError
    from multimodalgen.io import read_volume

    image = sitk.GetImageFromArray(np.full((16, 24), 40, np.int16))
    image.SetSpacing((0.8, 0.8))
    sitk.WriteImage(image, str(tmp_path / "one.dcm"))
    assert main(["info", str(tmp_path / "one.dcm")]) == 0
    text = capsys.readouterr().out
    assert "[24, 16, 1]" in text and "2D image" in text
    with pytest.raises(UserInputError, match="2D image"):
        read_volume(tmp_path / "one.dcm")


def test_info_lists_the_named_segments_of_a_label_map_sidecar(tmp_path, label_volume, capsys):
    from multimodalgen.io.writers import write_named_labels

    label_volume.metadata["segments"] = [{"label": 1, "name": "tumour", "color": [1, 0, 0]},
                                         {"label": 2, "name": "oedema", "color": [0, 0, 1]}]
    outputs = write_named_labels(label_volume, tmp_path / "seg.nii.gz")
    assert main(["info", str(tmp_path / "seg.nii.gz")]) == 0
    text = capsys.readouterr().out
    assert "segment      1: tumour" in text and "segment      2: oedema" in text
    outputs["labels"].write_text("{not json")
    assert main(["info", str(tmp_path / "seg.nii.gz")]) == 0  # a damaged sidecar is ignored, the image described
    assert "segment " not in capsys.readouterr().out


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    return struct.pack("<HH", group, element) + vr + struct.pack("<H", len(value)) + value


def _fake_dicom(path: Path, sop_class: str, modality: str) -> Path:
    """A minimal DICOM file of a non-image object: preamble, File Meta, SOP Class UID and Modality, no pixels."""
    meta = _element(0x0002, 0x0002, b"UI", sop_class.encode()) + _element(0x0002, 0x0010, b"UI",
                                                                             b"1.2.840.10008.1.2.1")
    body = _element(0x0008, 0x0016, b"UI", sop_class.encode()) + _element(0x0008, 0x0060, b"CS", modality.encode())
    path.write_bytes(b"\0" * 128 + b"DICM" + _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta)))
                     + meta + body)
    return path


@pytest.mark.parametrize("sop_class, modality, words", [
    ("1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT", "RT Structure Set"),
    ("1.2.840.10008.5.1.4.1.1.66.4", "SEG", "Segmentation object"),
    ("1.2.840.10008.5.1.4.1.1.88.22", "SR", "Structured Report"),
])
def test_non_image_dicom_objects_say_what_they_are(tmp_path, capsys, sop_class, modality, words):
    path = _fake_dicom(tmp_path / f"{modality.lower()}.dcm", sop_class, modality)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "give the image series" in err[0], err
    assert "check that the file is complete" not in err[0]
    folder = tmp_path / "series"
    folder.mkdir()
    _fake_dicom(folder / "IM0001", sop_class, modality)
    assert main(["info", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "holds no image series" in err and words in err


def test_an_image_dicom_is_not_mistaken_for_a_non_image_object(tmp_path):
    import SimpleITK as sitk

    from multimodalgen.io.dicom_objects import non_image_kind

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4), np.int16)), str(tmp_path / "ct.dcm"))
    assert non_image_kind(tmp_path / "ct.dcm") is None
    assert non_image_kind(_fake_dicom(tmp_path / "rt.dcm", "1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT"))
