"""Issue 20's bad inputs through the command line: one clear line on stderr, exit 2, no partial outputs, inputs
untouched (4D and empty images, an output folder that holds an input, a non-transform for apply)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from registration_helpers import grid_affine, render


@pytest.fixture
def pair(tmp_path):
    from multimodalgen.io import write_volume

    fixed = render((24, 26, 22), grid_affine((24, 26, 22), 2.5))
    write_volume(fixed, tmp_path / "f.nii.gz")
    write_volume(fixed.with_array(np.roll(fixed.array, 2, axis=0)), tmp_path / "m.nii.gz")
    return tmp_path


def _register(capsys, fixed, moving, out, *extra):
    from multimodalgen.cli.main import main

    code = main(["--progress", "none", "register", "--fixed", str(fixed), "--moving", str(moving), *extra,
                 "--out-dir", str(out)])
    return code, capsys.readouterr().err.strip()


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_four_dimensional_and_empty_images_exit_2_without_outputs(pair, capsys):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.random.rand(12, 12, 10, 3).astype(np.float32), np.eye(4)),
             str(pair / "4d.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((24, 26, 22), np.float32), grid_affine((24, 26, 22), 2.5)),
             str(pair / "empty.nii.gz"))
    for fixed, moving in (("4d.nii.gz", "m.nii.gz"), ("f.nii.gz", "4d.nii.gz"), ("f.nii.gz", "empty.nii.gz"),
                          ("empty.nii.gz", "m.nii.gz")):
        code, err = _register(capsys, pair / fixed, pair / moving, pair / "out")
        assert code == 2, (fixed, moving, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert not (pair / "out").exists() or not any((pair / "out").iterdir()), (fixed, moving)


def test_out_dir_whose_outputs_would_replace_an_input_is_refused(pair, capsys):
    out = pair / "out"
    out.mkdir()
    moving = out / "warped.nii.gz"  # the moving image sits where the warped output would go
    moving.write_bytes((pair / "m.nii.gz").read_bytes())
    before = _digest(moving)
    for extra in ((), ("--outputs", "transform,report")):  # refused even when no output has an input's name
        code, err = _register(capsys, pair / "f.nii.gz", moving, out, *extra)
        assert code == 2 and len(err.splitlines()) == 1 and "contains the input" in err, err
        assert _digest(moving) == before and sorted(p.name for p in out.iterdir()) == ["warped.nii.gz"]


def test_out_dir_that_is_or_holds_the_inputs_folder_is_refused(pair, capsys):
    """The folder of the inputs, or a folder above it: one line, exit 2, nothing written, inputs untouched (the
    policy of every folder-writing verb, in `verbs.output_policy`)."""
    (pair / "case").mkdir()
    fixed, moving = pair / "case" / "f.nii.gz", pair / "case" / "m.nii.gz"
    fixed.write_bytes((pair / "f.nii.gz").read_bytes())
    moving.write_bytes((pair / "m.nii.gz").read_bytes())
    digests = {p: _digest(p) for p in (fixed, moving)}
    listing = sorted(str(p.relative_to(pair)) for p in pair.rglob("*"))
    for out in (pair / "case", pair, pair / "case" / "." / ".." / "case"):
        code, err = _register(capsys, fixed, moving, out)
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "contains the input" in err and "choose a new or empty folder" in err, err
        assert sorted(str(p.relative_to(pair)) for p in pair.rglob("*")) == listing
        assert all(_digest(p) == d for p, d in digests.items())
    code, err = _register(capsys, fixed, moving, pair / "case" / "registration", "--outputs", "transform,report")
    assert code == 0, err  # a new folder beside (or below) the inputs is fine
    assert sorted(p.name for p in (pair / "case" / "registration").iterdir()) == ["report.json", "transform.h5"]


def test_apply_with_an_image_as_transform_exits_2(pair, capsys):
    from multimodalgen.cli.main import main

    code = main(["--progress", "none", "apply", "--transform", str(pair / "m.nii.gz"), "--moving",
                 str(pair / "m.nii.gz"), "--reference", str(pair / "f.nii.gz"), "--out", str(pair / "o.nii.gz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "transform" in err, err
    assert not (pair / "o.nii.gz").exists()


def test_bad_encoder_options_exit_2_before_any_output(pair, capsys):
    out = pair / "out_enc"
    code, err = _register(capsys, pair / "f.nii.gz", pair / "m.nii.gz", out, "--encoder", "encoder-v4")
    assert code == 2 and len(err.splitlines()) == 1 and "--features mind+encoder" in err, err
    code, err = _register(capsys, pair / "f.nii.gz", pair / "m.nii.gz", out, "--features", "mind+encoder",
                          "--encoder", "encoder-v4:bones")
    assert code == 2 and len(err.splitlines()) == 1 and "correspondence" in err, err
    code, err = _register(capsys, pair / "f.nii.gz", pair / "m.nii.gz", out, "--features", "mind+encoder",
                          "--encoder", "encoder-v2:tissue")
    assert code == 2 and len(err.splitlines()) == 1 and "no 'tissue' channel group" in err, err
    assert not out.exists() or not any(out.iterdir())
