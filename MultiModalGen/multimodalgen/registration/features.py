"""Modality-independent features for registration: MIND-SSC, optionally with the foundation encoder's features.

Features are ``[MIND-SSC || w * encoder features]`` (w ~ 0.1, as in anatomix's ConvexAdam experiments) when the
shipped encoder is available, and MIND-SSC alone otherwise (always available, no weights needed). Both images
of a pair always get the same kind of features. Tensors are `(1, C, I, J, K)` on the working grid.
"""

from __future__ import annotations

ENCODER_WEIGHT = 0.1
FEATURE_KINDS = ("mind", "mind+encoder", "auto")


def load_encoder_if_shipped(device, spec: str | None = None):
    """The shipped foundation encoder `spec` ("NAME[:GROUP]", `encoder.channels`; None = the default encoder, all
    channels) as `(model, (first, stop) channels)`, or None when no encoder weights are shipped.
    An unknown channel group or a group this encoder lacks is a UserInputError (not a silent fallback)."""
    from multimodalgen.encoder.channels import parse_encoder_spec, spec_channels
    from multimodalgen.encoder.weights import load_encoder
    from multimodalgen.errors import UserInputError

    name = parse_encoder_spec(spec)[0]
    try:
        model = load_encoder(name, device=device)
    except UserInputError:  # no shipped weights: MIND alone is the documented fallback
        if name is not None:
            raise
        return None
    return model, spec_channels(spec, model.config.out_channels)


def encoder_features(encoder, image, spacing_mm: float):
    """Encoder features of a `(1, 1, I, J, K)` image in [0, 1] -> `(1, C, I, J, K)` (unit RMS per channel).
    `encoder`: a model, or `(model, (first, stop))` from `load_encoder_if_shipped` (only those channels)."""
    import torch

    from multimodalgen.encoder.inference import extract_features

    model, (first, stop) = encoder if isinstance(encoder, tuple) else (encoder, (0, None))
    feats = extract_features(image[0, 0], model, device=image.device)
    feats = torch.as_tensor(feats, dtype=image.dtype, device=image.device)[None, first:stop]
    rms = feats.pow(2).mean(dim=(2, 3, 4), keepdim=True).clamp_min(1e-12).sqrt()
    return feats / rms


def compute_features(image, *, kind: str = "mind", encoder=None, spacing_mm: float = 2.0):
    """Features of a `(1, 1, I, J, K)` float image on an isotropic working grid.

    Args:
        kind: "mind" (MIND-SSC, 12 channels) or "mind+encoder" (needs `encoder`).
        spacing_mm: working spacing; MIND's neighbourhood is 2 voxels (= 4 mm at 2 mm).

    Returns:
        `(1, C, I, J, K)` tensor on the image's device.
    """
    import torch

    from multimodalgen.features.mind import mind_ssc_torch

    with torch.no_grad():
        mind = mind_ssc_torch(image, radius=1, dilation=2)
        if kind == "mind" or encoder is None:
            return mind
        extra = encoder_features(encoder, image, spacing_mm)
        return torch.cat([mind, ENCODER_WEIGHT * extra], dim=1)
