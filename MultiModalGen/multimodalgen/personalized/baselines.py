"""Early-fusion baseline: channel concatenation of all modalities (zeros where missing) into one UNet3D.

Same interface as `PersonalizedNet.forward` (images `(B, M, I, J, K)`, present `(B, M)` bool) so the training and
evaluation code is shared; returns logits only (no X_h, no reconstruction).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from multimodalgen.encoder.network import UNet3D
from multimodalgen.personalized.config import PersonalizedConfig
from multimodalgen.personalized.model import _head, use_volume_statistics


class ConcatNet(nn.Module):
    """UNet3D on the `(B, M, ...)` stack with absent modalities zero-filled, then a segmentation head."""

    def __init__(self, config: PersonalizedConfig | None = None) -> None:
        super().__init__()
        self.config = config or PersonalizedConfig()
        enc = dataclasses.replace(self.config.encoder, in_channels=len(self.config.modalities))
        self.encoder = UNet3D(enc)
        if self.config.encoder_norm == "volume":
            use_volume_statistics(self.encoder)
        self.seg_head = _head(enc.out_channels, self.config.head_width, self.config.n_classes)

    def forward(self, images: torch.Tensor, present: torch.Tensor, reconstruct: bool = False) -> dict:
        x = images * present[:, :, None, None, None].to(images.dtype)
        return {"z": None, "xh": None, "logits": self.seg_head(self.encoder(x)), "recon": None}
