"""Device and thread selection. CPU is first-class; CUDA is used when present and asked for ("auto")."""

from __future__ import annotations

from multimodalgen.errors import UserInputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto"):
    """Return a `torch.device` for "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N"."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserInputError("CUDA was requested but no CUDA GPU is available", expected="--device cpu or auto",
                                 got=f"--device {name} (torch {torch.__version__})",
                                 fix="use --device cpu (or auto), or install a CUDA build of torch")
        return torch.device(name)
    raise UserInputError("unknown device", expected="auto, cpu or cuda", got=repr(name))


def set_threads(threads: int | None) -> None:
    """Limit this process's compute threads, the one thread set-up of every door (CLI, worker, batch processes and
    Ray actors, training commands): the OpenMP/MKL variables, read when torch is first imported, and torch's
    intra-op threads when it already is. None or 0 = leave the default."""
    if threads is None or threads == 0:
        return
    if threads < 0:
        raise UserInputError("invalid thread count", expected="a positive integer", got=str(threads))
    import os
    import sys

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(int(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
