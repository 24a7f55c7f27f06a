"""`PersonalizedNet`: any subset of a subject's modalities -> personalized invariant representation X_h.

Shapes: images `(B, M, I, J, K)` float32 in ~[0, 1] (M = len(config.modalities), voxel axes), `present` `(B, M)`
bool (which modalities exist for each subject; absent channels are ignored, their content does not matter).

    z_m  = f(x_m ; e_m)                 shared foundation encoder, modality embedding e_m added after the stem
                                        (plus, with Early Intervention, FiLM from the reference modality's token)
    X_h  = sum_m present_m z_m / sum_m present_m  +  B        (B: learnable population prior, optional)
    seg  = head(X_h)    (B, C, I, J, K) logits
    x^_m = g_m(X_h)     (B, M, I, J, K) reconstruction of every modality, present or not (cross-modal)

I, J, K must be multiples of `config.encoder.divisor` (`inference` pads). The encoder forward mirrors
`multimodalgen.encoder.network.UNet3D.forward` (same modules, same order) with a hook after the stem.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from multimodalgen.encoder.network import UNet3D
from multimodalgen.personalized.config import PersonalizedConfig


def encoder_forward(unet: UNet3D, x: torch.Tensor, stem_shift: torch.Tensor | None = None,
                    stem_scale: torch.Tensor | None = None, return_bottleneck: bool = False):
    """`UNet3D` forward `(B, 1, I, J, K) -> (B, 16, I, J, K)` with the stem output modulated as
    `stem(x) * (1 + scale) + shift` (`(B, w0)` each, None = 0). With `return_bottleneck`, also the globally
    average-pooled deepest activation `(B, w_last)` (the modality's high-level token)."""
    d = unet.config.divisor
    if any(s % d for s in x.shape[2:]):
        raise ValueError(f"input spatial size {tuple(x.shape[2:])} must be a multiple of {d}")
    h0 = unet.stem(x)
    if stem_scale is not None:
        h0 = h0 * (1.0 + stem_scale[:, :, None, None, None])
    if stem_shift is not None:
        h0 = h0 + stem_shift[:, :, None, None, None]
    skips = [h0]
    for block in unet.down:
        skips.append(block(F.max_pool3d(skips[-1], 2)))
    h = skips[-1]
    token = h.mean(dim=(2, 3, 4))
    for i in range(len(unet.up) - 1, -1, -1):
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = unet.up[i](torch.cat([h, skips[i + 1]], dim=1))
    h = F.interpolate(h, scale_factor=2, mode="nearest")
    out = unet.head(unet.up0(torch.cat([h, skips[0]], dim=1)))
    return (out, token) if return_bottleneck else out


def masked_mean(z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of `z` `(B, M, C, ...)` over the modalities present (`present` `(B, M)` bool): `(B, C, ...)`.

    Raises ValueError if a subject has no modality present.
    """
    weights = present.to(z.dtype)
    count = weights.sum(dim=1)
    if bool((count == 0).any()):
        raise ValueError("every subject needs at least one modality present")
    shape = weights.shape + (1,) * (z.dim() - 2)
    return (z * weights.view(shape)).sum(dim=1) / count.view((-1,) + (1,) * (z.dim() - 2))


def use_volume_statistics(module: nn.Module) -> None:
    """Make every BatchNorm in `module` normalise with the current batch's statistics, also in eval mode (no
    running statistics; see `PersonalizedConfig.encoder_norm`)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv3d(hidden, cout, 1))


class PersonalizedNet(nn.Module):
    """See the module docstring."""

    def __init__(self, config: PersonalizedConfig | None = None) -> None:
        super().__init__()
        self.config = config or PersonalizedConfig()
        c = self.config
        w = c.encoder.widths
        feat = c.encoder.out_channels
        self.encoder = UNet3D(c.encoder)
        if c.encoder_norm == "volume":
            use_volume_statistics(self.encoder)
        self.modality_embedding = nn.Parameter(torch.zeros(len(c.modalities), w[0]))
        self.prior = nn.Parameter(torch.zeros(feat, c.prior_grid, c.prior_grid, c.prior_grid)) if c.prior else None
        self.ei_proj = None
        if c.early_intervention:
            self.ei_proj = nn.Sequential(nn.LayerNorm(w[-1]), nn.Linear(w[-1], 2 * w[-1]), nn.GELU(),
                                         nn.Linear(2 * w[-1], 2 * w[0] * len(c.modalities)))
            nn.init.zeros_(self.ei_proj[-1].weight)
            nn.init.zeros_(self.ei_proj[-1].bias)
        self.decoders = nn.ModuleList([_head(feat, c.decoder_width, 1) for _ in c.modalities])
        self.seg_head = _head(feat, c.head_width, c.n_classes)

    # -- pieces ---------------------------------------------------------------------------------------------
    def _run_encoder(self, x: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor | None = None,
                     return_bottleneck: bool = False):
        """`encoder_forward` on `(N, 1, ...)`; with per-volume normalisation one volume per call, so a volume's
        features never depend on the other subjects of a batch."""
        if self.config.encoder_norm != "volume" or x.shape[0] == 1:
            return encoder_forward(self.encoder, x, shift, scale, return_bottleneck)
        parts = [encoder_forward(self.encoder, x[i:i + 1], None if shift is None else shift[i:i + 1],
                                 None if scale is None else scale[i:i + 1], return_bottleneck)
                 for i in range(x.shape[0])]
        if return_bottleneck:
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return torch.cat(parts)

    def encode(self, images: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Per-modality features `(B, M, 16, I, J, K)` (zeros where a modality is absent)."""
        b, m = images.shape[:2]
        w0 = self.config.encoder.widths[0]
        z = images.new_zeros((b, m, self.config.encoder.out_channels) + tuple(images.shape[2:]))
        order = list(range(m))
        reference_token = None
        if self.ei_proj is not None:  # the first present modality of each subject is its reference
            ref = present.float().argmax(dim=1)                                   # (B,)
            x_ref = images[torch.arange(b), ref][:, None]
            shift = self.modality_embedding[ref]
            z_ref, reference_token = self._run_encoder(x_ref, shift, return_bottleneck=True)
            film = self.ei_proj(reference_token).view(b, m, 2, w0)
        for k in order:
            rows = present[:, k].nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            shift = self.modality_embedding[k].expand(rows.numel(), w0)
            scale = None
            if reference_token is not None:
                is_ref = ref[rows] == k
                shift = shift + film[rows, k, 1] * (~is_ref)[:, None]
                scale = film[rows, k, 0] * (~is_ref)[:, None]
                out = self._run_encoder(images[rows, k][:, None], shift, scale)
                out = torch.where(is_ref[:, None, None, None, None], z_ref[rows], out)
            else:
                out = self._run_encoder(images[rows, k][:, None], shift)
            z = z.index_put((rows, torch.full_like(rows, k)), out)
        return z

    def prior_map(self, spatial: tuple[int, int, int]) -> torch.Tensor | None:
        """The population prior B resized to `spatial`: `(1, 16, I, J, K)`, or None without a prior."""
        if self.prior is None:
            return None
        return F.interpolate(self.prior[None], size=spatial, mode="trilinear", align_corners=True)

    def fuse(self, z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """X_h `(B, 16, I, J, K)` = masked mean over present modalities (+ prior)."""
        xh = masked_mean(z, present)
        prior = self.prior_map(tuple(z.shape[3:]))
        return xh if prior is None else xh + prior

    def segment_logits(self, xh: torch.Tensor) -> torch.Tensor:
        return self.seg_head(xh)

    def reconstruct(self, xh: torch.Tensor) -> torch.Tensor:
        """g_m(X_h) for every modality: `(B, M, I, J, K)`."""
        return torch.cat([dec(xh) for dec in self.decoders], dim=1)

    def forward(self, images: torch.Tensor, present: torch.Tensor, reconstruct: bool = True) -> dict:
        """`{"z": (B,M,16,...), "xh": (B,16,...), "logits": (B,C,...), "recon": (B,M,...) or None}`."""
        z = self.encode(images, present)
        xh = self.fuse(z, present)
        return {"z": z, "xh": xh, "logits": self.segment_logits(xh),
                "recon": self.reconstruct(xh) if reconstruct else None}

    def modality_index(self, names: list[str] | tuple[str, ...]) -> list[int]:
        """Indices of modality names (ValueError naming the known ones for an unknown name)."""
        known = self.config.modalities
        bad = [n for n in names if n not in known]
        if bad:
            raise ValueError(f"unknown modalities {bad}; this model knows {list(known)}")
        return [known.index(n) for n in names]
