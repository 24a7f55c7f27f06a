"""Typed configuration of an adapter set (saved inside adapter_config.json)."""

from __future__ import annotations

import dataclasses
from typing import Any

METHODS = ("mor", "lora")
ROUTERS = ("location", "layer")


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """What adapters to put where.

    Attributes:
        method: "mor" (mixture of low-rank experts of `ranks` with a bypass router) or "lora" (one expert of rank
            `ranks[0]`, gate fixed to 1, no router).
        ranks: expert ranks, e.g. (2, 4, 8) for MoR or (4,) for LoRA.
        alpha_over_rank: scaling alpha_i / r_i of every expert (EI uses alpha = 2 r, i.e. 2.0).
        router: "location" (a 1x1x1 conv / linear router on the layer input: one gate vector per voxel or token;
            input-dependent, merges only approximately) or "layer" (one learned gate vector per layer; merges
            exactly).
        target_modules: fnmatch patterns over dotted module names (`model.named_modules()`); matching Conv3d and
            Linear layers get an adapter. Empty = every Conv3d and Linear.
        exclude_modules: patterns removed from the match (e.g. a task head that is trained fully instead).
        conv_kernel: "full" -- A_i of a Conv3d uses the base kernel (k^3 cin r_i weights); "pointwise" -- A_i is
            1x1x1 (cin r_i weights, needs "same" padding), its merged delta sits in the kernel's centre tap.
    """

    method: str = "mor"
    ranks: tuple[int, ...] = (2, 4, 8)
    alpha_over_rank: float = 2.0
    router: str = "location"
    target_modules: tuple[str, ...] = ()
    exclude_modules: tuple[str, ...] = ()
    conv_kernel: str = "full"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"adapter method must be one of {METHODS}, got {self.method!r}")
        if self.router not in ROUTERS:
            raise ValueError(f"adapter router must be one of {ROUTERS}, got {self.router!r}")
        if not self.ranks or any(int(r) < 1 for r in self.ranks):
            raise ValueError(f"ranks must be a non-empty list of positive integers, got {self.ranks!r}")
        if self.method == "lora" and len(self.ranks) != 1:
            raise ValueError(f"plain LoRA takes exactly one rank, got {self.ranks!r}")
        if self.conv_kernel not in ("full", "pointwise"):
            raise ValueError(f"conv_kernel must be 'full' or 'pointwise', got {self.conv_kernel!r}")
        if self.alpha_over_rank <= 0:
            raise ValueError(f"alpha_over_rank must be > 0, got {self.alpha_over_rank}")

    @classmethod
    def lora(cls, rank: int = 4, **kwargs: Any) -> "AdapterConfig":
        """Plain LoRA of one rank."""
        return cls(method="lora", ranks=(int(rank),), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "ranks": list(self.ranks), "alpha_over_rank": self.alpha_over_rank,
                "router": self.router, "target_modules": list(self.target_modules),
                "exclude_modules": list(self.exclude_modules), "conv_kernel": self.conv_kernel}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AdapterConfig":
        from multimodalgen.config_dict import checked_fields

        data = checked_fields(cls, data, "AdapterConfig")
        for key in ("ranks", "target_modules", "exclude_modules"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)
