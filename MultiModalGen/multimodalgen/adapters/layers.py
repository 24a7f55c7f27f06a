"""`MoRLayer`: a frozen Conv3d or Linear plus a mixture of low-rank experts (MoR) or one LoRA expert.

    y = W0 x + b0 + sum_i g_i(x) * (alpha_i / r_i) * B_i A_i x          (i = 1..n experts, ranks r_i)
    g(x) = softmax(router(x))[1:]         (n + 1 router outputs; slot 0 is the bypass and is dropped)

so sum_i g_i(x) = 1 - g_0(x) <= 1 and a location can fall back to the frozen layer (g_0 -> 1). For Conv3d, A_i is
a conv with the base layer's kernel, stride, padding, dilation and padding mode (cin -> r_i) and B_i a 1x1x1 conv
(r_i -> cout); for Linear both are linear maps. Because B_i is pointwise, the gate of a location can be applied to
the rank-r_i activation before B_i, so all experts run as one A (cin -> sum r_i) and one B (sum r_i -> cout).

With `conv_kernel="pointwise"`, A_i is a 1x1x1 conv (same stride) instead: far fewer parameters, and its merged
delta is placed in the centre tap of the base kernel (exact for "same" padding).

Init: A kaiming-uniform (a = sqrt 5), B = 0, router weights and bias 0: the layer starts as an exact no-op.

Router kinds: "location" -- a 1x1x1 conv (Linear for tokens) on the layer input with the base stride, one gate
vector per output voxel/token (input-dependent); "layer" -- one learned logit vector per layer (input-independent).
LoRA has no router (gate 1).

Merging: the adapter delta is folded into the base weight, W0 <- W0 + sum_i gbar_i s_i B_i A_i. This is exact for
LoRA and the "layer" router. For the "location" router the mixture depends on the input, so `merge` folds the
*router-averaged* gates gbar (mean gate per expert over every location seen in forward passes while
`record_gates` is on) and refuses unless `approximate=True`. `unmerge` subtracts exactly the delta that `merge`
added, so merge followed by unmerge restores the base weights within floating-point rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from multimodalgen.adapters.config import AdapterConfig

SUPPORTED = (nn.Conv3d, nn.Linear)


class MoRLayer(nn.Module):
    """Wraps a frozen `nn.Conv3d` or `nn.Linear` (kept as `.base`) with low-rank experts. See module docstring."""

    def __init__(self, base: nn.Module, config: AdapterConfig) -> None:
        super().__init__()
        if not isinstance(base, SUPPORTED):
            raise TypeError(f"MoRLayer wraps Conv3d or Linear, got {type(base).__name__}")
        if isinstance(base, nn.Conv3d) and base.groups != 1:
            raise TypeError("grouped / depthwise Conv3d layers are not supported by MoRLayer")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.config = config
        self.ranks = tuple(int(r) for r in config.ranks)
        self.n_experts = len(self.ranks)
        self.is_conv = isinstance(base, nn.Conv3d)
        total = sum(self.ranks)
        dev, dt = base.weight.device, base.weight.dtype
        self.pointwise = self.is_conv and config.conv_kernel == "pointwise"
        if self.pointwise:
            same = all(p == d * (k - 1) // 2 and k % 2 == 1
                       for p, d, k in zip(base.padding, base.dilation, base.kernel_size))
            if not same:
                raise TypeError("pointwise adapters need a Conv3d with odd kernel and 'same' padding")
            self.lora_a = nn.Conv3d(base.in_channels, total, 1, stride=base.stride, bias=False, device=dev,
                                    dtype=dt)
        elif self.is_conv:
            self.lora_a = nn.Conv3d(base.in_channels, total, base.kernel_size, stride=base.stride,
                                    padding=base.padding, dilation=base.dilation, bias=False,
                                    padding_mode=base.padding_mode, device=dev, dtype=dt)
        if self.is_conv:
            self.lora_b = nn.Conv3d(total, base.out_channels, 1, bias=False, device=dev, dtype=dt)
        else:
            self.lora_a = nn.Linear(base.in_features, total, bias=False, device=dev, dtype=dt)
            self.lora_b = nn.Linear(total, base.out_features, bias=False, device=dev, dtype=dt)
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)
        self.router: nn.Module | None = None
        self.router_logits: nn.Parameter | None = None
        if config.method == "mor":
            if config.router == "location":
                if self.is_conv:
                    self.router = nn.Conv3d(base.in_channels, self.n_experts + 1, 1, stride=base.stride,
                                            device=dev, dtype=dt)
                else:
                    self.router = nn.Linear(base.in_features, self.n_experts + 1, device=dev, dtype=dt)
                nn.init.zeros_(self.router.weight)
                nn.init.zeros_(self.router.bias)
            else:
                self.router_logits = nn.Parameter(torch.zeros(self.n_experts + 1, device=dev, dtype=dt))
        self.register_buffer("scales", torch.full((self.n_experts,), float(config.alpha_over_rank), dtype=dt,
                                                  device=dev), persistent=False)
        self.register_buffer("gate_sum", torch.zeros(self.n_experts, dtype=torch.float64, device=dev),
                             persistent=False)
        self.register_buffer("gate_count", torch.zeros((), dtype=torch.float64, device=dev), persistent=False)
        self.record_gates = False
        self.merged = False
        self._merged_delta: torch.Tensor | None = None

    # -- gates ----------------------------------------------------------------------------------------------
    def gates(self, x: torch.Tensor, out_spatial: tuple[int, ...] | None = None) -> torch.Tensor:
        """Expert gates (bypass slot dropped): conv `(B, n, *out_spatial)`, linear `(..., n)`, each sum <= 1.

        LoRA returns ones; the "layer" router returns one vector broadcast to that shape.
        """
        n = self.n_experts
        if self.config.method == "lora":
            g = torch.ones(n, dtype=x.dtype, device=x.device)
            return g.view(1, n, *([1] * (x.dim() - 2))) if self.is_conv else g
        if self.router_logits is not None:
            g = torch.softmax(self.router_logits, dim=0)[1:]
            return g.view(1, n, *([1] * (x.dim() - 2))) if self.is_conv else g
        if self.is_conv:
            logits = self.router(x)
            if out_spatial is not None and tuple(logits.shape[2:]) != tuple(out_spatial):
                logits = F.interpolate(logits, size=out_spatial, mode="nearest")
            return torch.softmax(logits, dim=1)[:, 1:]
        return torch.softmax(self.router(x), dim=-1)[..., 1:]

    def _expand(self, g: torch.Tensor, dim: int) -> torch.Tensor:
        """Multiply each expert's gate by alpha_i / r_i and repeat it r_i times along `dim`."""
        shape = [1] * g.dim()
        shape[dim] = self.n_experts
        reps = torch.as_tensor(self.ranks, device=g.device)
        return torch.repeat_interleave(g * self.scales.view(shape), reps, dim=dim)

    # -- forward --------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        h = self.lora_a(x)
        if self.is_conv:
            g = self.gates(x, tuple(h.shape[2:]))
            if self.record_gates:
                self._record(g.detach().float().mean(dim=tuple(d for d in range(g.dim()) if d != 1)), g)
            h = h * self._expand(g, 1)
        else:
            g = self.gates(x)
            if self.record_gates:
                flat = g.detach().reshape(-1, self.n_experts).float()
                self._record(flat.mean(0), flat)
            h = h * self._expand(g, -1)
        return y + self.lora_b(h)

    def _record(self, mean_gate: torch.Tensor, g: torch.Tensor) -> None:
        weight = float(g.numel() // self.n_experts)
        self.gate_sum += mean_gate.double() * weight
        self.gate_count += weight

    # -- merge / unmerge ------------------------------------------------------------------------------------
    def mean_gates(self, approximate: bool = False) -> torch.Tensor:
        """The `(n,)` gate vector `merge` folds: exact for LoRA / "layer", router-averaged for "location"."""
        if self.config.method == "lora":
            return torch.ones(self.n_experts, device=self.scales.device, dtype=self.scales.dtype)
        if self.router_logits is not None:
            return torch.softmax(self.router_logits.detach(), dim=0)[1:]
        if not approximate:
            raise ValueError("a per-location router is input-dependent: merging folds the router-averaged gates "
                             "and is approximate; call merge(approximate=True) after forward passes with "
                             "record_gates=True, or use router='layer' for an exact merge")
        if float(self.gate_count) <= 0:
            raise ValueError("no gates were recorded: set record_gates=True and run forward passes before merging")
        return (self.gate_sum / self.gate_count).to(self.scales.dtype)

    def delta_weight(self, gates: torch.Tensor) -> torch.Tensor:
        """The weight delta sum_i gates_i s_i B_i A_i, shaped like `base.weight`."""
        col = self._expand(gates.to(self.scales.dtype), 0)          # (R,)
        b = self.lora_b.weight.detach().reshape(self.lora_b.weight.shape[0], -1)   # (cout, R)
        a = self.lora_a.weight.detach().reshape(self.lora_a.weight.shape[0], -1)   # (R, cin * k^3)
        delta = (b * col[None, :]) @ a
        if not self.pointwise:
            return delta.reshape(self.base.weight.shape)
        full = torch.zeros_like(self.base.weight)
        ci, cj, ck = (k // 2 for k in self.base.kernel_size)
        full[:, :, ci, cj, ck] = delta
        return full

    @torch.no_grad()
    def merge(self, approximate: bool = False) -> None:
        """Fold the adapter into the base weight (see module docstring for exactness). No-op if merged."""
        if self.merged:
            return
        delta = self.delta_weight(self.mean_gates(approximate))
        self.base.weight.add_(delta)
        self._merged_delta = delta
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract exactly what `merge` added. No-op if not merged."""
        if not self.merged:
            return
        self.base.weight.sub_(self._merged_delta)
        self._merged_delta = None
        self.merged = False

    def adapter_parameters(self) -> list[nn.Parameter]:
        """Trainable adapter parameters (A, B and the router), not the frozen base."""
        params = [self.lora_a.weight, self.lora_b.weight]
        if self.router is not None:
            params += list(self.router.parameters())
        if self.router_logits is not None:
            params.append(self.router_logits)
        return params

    def extra_repr(self) -> str:
        return f"method={self.config.method}, ranks={self.ranks}, router={self.config.router}, merged={self.merged}"
