"""Fuzz the readers: truncated and bit-flipped NIfTI / NRRD / MHA / DICOM files must end in one clear
`UserInputError` (or read as a valid volume), never a hang, a crash or another exception.

    python benchmarks/io/fuzz_readers.py [--cases N] [--seed S] [--folder DIR]

Prints one JSON line: {"tried", "held", "read_ok", "refused", "failures": [...]} ("held" = read_ok + refused) and
exits 1 when anything was not held. Each case runs under a 20 s alarm (a hang counts as a failure).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "MultiModalGen"))


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def seeds(folder: Path) -> list[Path]:
    """Small valid files of every format the readers take."""
    import SimpleITK as sitk

    from multimodalgen.io import write_label, write_volume
    from multimodalgen.volume import Volume

    rng = np.random.default_rng(0)
    volume = Volume(rng.normal(100, 20, (12, 10, 8)).astype(np.float32), np.diag([1.2, 1.0, 2.0, 1.0]), "T1")
    labels = Volume((volume.array > 100).astype(np.uint8), volume.affine, "LABEL")
    files = []
    for name in ("a.nii.gz", "a.nii", "a.nrrd", "a.mha"):
        files.append(write_volume(volume, folder / name))
    files.append(write_label(labels, folder / "a.seg.nrrd"))
    image = sitk.Cast(sitk.GetImageFromArray(np.transpose(volume.array, (2, 1, 0))), sitk.sitkInt16)
    for k in range(image.GetDepth()):
        s = image[:, :, k]
        s.SetMetaData("0020|0032", f"0\\0\\{2.0 * k}")
        s.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        s.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.7")
        s.SetMetaData("0008|0060", "MR")
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"s{k:02d}.dcm"))
        writer.Execute(s)
    files.append(folder / "s03.dcm")
    return files


def mutants(data: bytes, rng: np.random.Generator, n: int) -> list[bytes]:
    """`n` damaged copies: truncations (anywhere, mostly in the header) and bit flips in the first 1 KiB."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            cut = int(rng.integers(0, min(len(data), 1024))) if i % 4 == 0 else int(rng.integers(0, len(data)))
            out.append(data[:cut])
        else:
            damaged = bytearray(data)
            for _ in range(int(rng.integers(1, 8))):
                position = int(rng.integers(0, min(len(damaged), 1024)))
                damaged[position] ^= 1 << int(rng.integers(0, 8))
            out.append(bytes(damaged))
    return out


def run(cases_per_file: int, seed: int, folder: Path) -> dict:
    from multimodalgen.errors import UserInputError
    from multimodalgen.io import read_volume

    rng = np.random.default_rng(seed)
    signal.signal(signal.SIGALRM, _alarm)
    tried = read_ok = refused = 0
    failures = []
    for original in seeds(folder):
        for n, data in enumerate(mutants(original.read_bytes(), rng, cases_per_file)):
            target = folder / "fuzz" / f"{n}_{original.name}"
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(data)
            tried += 1
            signal.alarm(20)
            try:
                read_volume(target, allow_nonfinite=True)
                read_ok += 1
            except UserInputError as exc:
                refused += 1
                if "\n" in str(exc):
                    failures.append(f"{target.name}: multi-line error")
            except Hang:
                failures.append(f"{target.name}: hang (> 20 s)")
            except BaseException as exc:  # noqa: BLE001 - the point of the fuzz run
                failures.append(f"{target.name}: {type(exc).__name__}: {str(exc)[:120]}")
            finally:
                signal.alarm(0)
                target.unlink()
    return {"tried": tried, "held": read_ok + refused, "read_ok": read_ok, "refused": refused,
            "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=60, help="damaged copies per seed file (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.cases, args.seed, Path(args.folder or tmp))
    print(json.dumps(result))
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
