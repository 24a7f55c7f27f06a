"""Verb `features`: an image -> its 16-channel encoder feature map `(16, I, J, K)` on the same grid (file level)."""

from __future__ import annotations

import time
from pathlib import Path

from multimodalgen.errors import UserInputError
from multimodalgen.verbs.result import Result, RunContext


def features_file(image, *, out: Path, ctx: RunContext, modality: str | None = None, encoder: str | None = None,
                  patch: int = 128, overlap: float = 0.25) -> Result:
    """Write the encoder features of `image` to `out` (float32, channels first, the image's grid).

    Args:
        image: image file or DICOM folder; `modality` selects the intensity normalisation (CT: HU window).
        encoder: shipped encoder name or folder (default: the registry's default encoder).
        patch, overlap: sliding window size (voxels, >= 16) and overlap fraction in [0, 0.9].
    """
    from multimodalgen.encoder.inference import features_for_volume, fold_batchnorm
    from multimodalgen.encoder.weights import load_encoder
    from multimodalgen.io import read_volume, write_volume

    if not 0.0 <= overlap <= 0.9:
        raise UserInputError("invalid --overlap", expected="a fraction in [0, 0.9]", got=str(overlap))
    if patch < 16:
        raise UserInputError("invalid --patch", expected="at least 16 voxels", got=str(patch))
    t0 = time.perf_counter()
    volume = read_volume(image, modality=modality)
    device = ctx.torch_device()
    model = ctx.model(f"encoder:{encoder}:{device}", lambda: fold_batchnorm(load_encoder(encoder, device=device)))
    t1 = time.perf_counter()
    feats = features_for_volume(volume, model, device, patch=patch, overlap=overlap, progress=ctx.progress)
    t2 = time.perf_counter()
    write_volume(feats, out)
    return Result({"features": Path(out)}, {"channels": int(feats.array.shape[0]), "shape": list(feats.array.shape)},
                  {"read_and_load": t1 - t0, "features": t2 - t1, "write": time.perf_counter() - t2})
