"""A thin 3D UNet producing 16 contrast-invariant feature channels per voxel.

Input `(B, 1, I, J, K)` float32 intensities normalised to ~[0, 1]; I, J, K multiples of `UNetConfig.divisor`
(2**number of poolings; `inference.extract_features` pads for you). Output `(B, 16, I, J, K)`.

Layout (widths w0..w4 from `UNetConfig.widths`): to fit CPU budgets the full-resolution path is a single
3x3x3 conv (1 -> w0) on the way down and a single 3x3x3 conv ((w1 + w0) -> w0) plus a 1x1x1 projection to the
output on the way up (that last conv can be wider than w0: `head_width`, so the 16 outputs are not confined to a
w0-dimensional space); all heavier blocks (two 3x3x3 conv + BatchNorm + ReLU) run at 1/2 resolution and below.
Down: max-pool 2; up: nearest-neighbour x2, skip concatenated before the convolutions (anatomix-style).
BatchNorm (eval mode at inference) keeps features independent of the window, which sliding-window inference
needs. `forward(x, return_levels=True)` also returns the decoder activations used by the contrastive loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Architecture of the encoder; saved next to the weights (config.json) and in checkpoints."""

    in_channels: int = 1
    out_channels: int = 16
    widths: tuple[int, ...] = (8, 16, 32, 64, 96)   # full res, 1/2, 1/4, 1/8, 1/16
    padding_mode: str = "replicate"
    head_width: int = 0                              # channels of the last full-resolution conv (0 = widths[0])
    half_width: int = 0                              # channels of the 1/2-resolution decoder block (0 = widths[1])

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"in/out channels must be >= 1, got {self.in_channels}, {self.out_channels}")
        if len(self.widths) < 3 or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must list >= 3 positive channel counts, got {self.widths}")
        if self.padding_mode not in ("zeros", "replicate", "reflect"):
            raise ValueError(f"padding_mode must be zeros|replicate|reflect, got {self.padding_mode!r}")
        if self.head_width < 0 or self.half_width < 0:
            raise ValueError(f"head_width and half_width must be >= 0 (0 = the widths entry), got "
                             f"{self.head_width}, {self.half_width}")

    @property
    def final_width(self) -> int:
        """Channels of the last full-resolution conv, which the 1x1x1 output projection reads."""
        return self.head_width or self.widths[0]

    def decoder_width(self, level: int) -> int:
        """Output channels of decoder block `level` (1 = 1/2 resolution, ...): `half_width` may widen level 1."""
        return self.half_width if level == 1 and self.half_width else self.widths[level]

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this (2 ** number of poolings)."""
        return 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict[str, Any]:
        out = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "widths": list(self.widths), "padding_mode": self.padding_mode}
        if self.head_width:
            out["head_width"] = self.head_width
        if self.half_width:
            out["half_width"] = self.half_width
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UNetConfig":
        data = dict(data)
        if "widths" in data:
            data["widths"] = tuple(int(w) for w in data["widths"])
        return cls(**data)


def _conv(cin: int, cout: int, mode: str, k: int = 3) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, k, padding=k // 2, bias=False, padding_mode=mode)


class ConvBlock(nn.Sequential):
    """`n` x (3x3x3 conv -> BatchNorm -> ReLU)."""

    def __init__(self, cin: int, cout: int, mode: str, n: int = 2) -> None:
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [_conv(cin if i == 0 else cout, cout, mode), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class UNet3D(nn.Module):
    """The encoder network. See the module docstring for the layout."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        w = self.config.widths
        mode = self.config.padding_mode
        self.stem = ConvBlock(self.config.in_channels, w[0], mode, n=1)
        self.down = nn.ModuleList([ConvBlock(w[i - 1], w[i], mode) for i in range(1, len(w))])
        dw = self.config.decoder_width
        self.up = nn.ModuleList([ConvBlock(dw(i + 1) + w[i], dw(i), mode) for i in range(1, len(w) - 1)])
        self.up0 = ConvBlock(dw(1) + w[0], self.config.final_width, mode, n=1)
        self.head = nn.Conv3d(self.config.final_width, self.config.out_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def level_channels(self) -> list[int]:
        """Channel counts of the activations returned with `return_levels=True` (coarse to fine, then output)."""
        w = self.config.widths
        return [self.config.decoder_width(i) for i in range(len(w) - 2, 0, -1)] + [self.config.out_channels]

    def forward(self, x: torch.Tensor, return_levels: bool = False):
        """`(B, C_in, I, J, K)` -> `(B, 16, I, J, K)`; with `return_levels`, also the list of decoder activations
        `[1/8, 1/4, 1/2 resolution..., output]` (see `level_channels`)."""
        d = self.config.divisor
        if any(s % d for s in x.shape[2:]):
            raise ValueError(f"input spatial size {tuple(x.shape[2:])} must be a multiple of {d}")
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool3d(skips[-1], 2)))
        h = skips[-1]
        levels = []
        for i in range(len(self.up) - 1, -1, -1):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = self.up[i](torch.cat([h, skips[i + 1]], dim=1))
            levels.append(h)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.up0(torch.cat([h, skips[0]], dim=1))
        out = self.head(h)
        if return_levels:
            return out, levels + [out]
        return out


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
