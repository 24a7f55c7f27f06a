"""Per-voxel features for the few-shot head, computed once per volume and cached.

Two families, concatenated along the channel axis (`(F, I, J, K)` float32, voxel grid of the image):
- **intensity**: for each image channel, normalised with `multimodalgen.intensity.normalize` (per modality), at
  each scale `s` (mm): Gaussian smoothing, gradient magnitude and Laplacian of the smoothed image; scale-normalised
  (`s * |grad|`, `s^2 * laplacian`) and standardised with statistics of the whole channel, so features computed on
  any box of the volume are identical to those of the whole volume on that box;
- **encoder**: the foundation encoder's 16 contrast-invariant channels per image channel
  (`multimodalgen.encoder.inference`), used when that module and its shipped weights (`Resources/Models/
  encoder-v2`) exist and `encoder` is "auto" or "on"; each channel standardised on the computed region.

`FeatureCache` keys results by image content (hash of the arrays and affine), the box and the feature config, so an
interactive session computes them once and a later box inside a cached one is a view of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from multimodalgen.errors import UserInputError

ENCODER_MODES = ("auto", "on", "off")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Which features to compute (saved in task files so another patient gets the same features).

    Attributes:
        scales_mm: Gaussian scales (mm) of the intensity features.
        encoder: "auto" (use the foundation encoder when its weights are shipped), "on" (required), "off"
            (default: measured on 2026-11-26 with `benchmarks/fewshot/eval_inprocess.py`, adding the encoder's
            features lowers the dev benchmark's mean Dice at K = 1/3/5 from .702/.812/.865 to .561/.725/.834 with
            encoder-v2 and to .599/.789/.860 with encoder-v1: they help voxel matching, not this head; re-measured
            2026-12-04 on the current engine: off .679/.791/.833, encoder-v4:tissue .641/.772/.808,
            encoder-v4:correspondence .573/.711/.806, all 16 of encoder-v4 .578/.745/.809).
        encoder_name: the shipped encoder as NAME[:GROUP] (`multimodalgen.encoder.channels`): its folder under the
            shipped models folder and, for a grown encoder, the channel group to use (e.g. "encoder-v4:tissue").
    """

    scales_mm: tuple[float, ...] = (1.0, 2.0, 4.0)
    encoder: str = "off"
    encoder_name: str = "encoder-v2"

    def __post_init__(self) -> None:
        if self.encoder not in ENCODER_MODES:
            raise UserInputError("invalid encoder mode", expected=" or ".join(ENCODER_MODES), got=repr(self.encoder))
        from multimodalgen.encoder.channels import parse_encoder_spec

        parse_encoder_spec(self.encoder_name)
        if not self.scales_mm or any(float(s) <= 0 for s in self.scales_mm):
            raise UserInputError("invalid feature scales", expected="positive scales in mm",
                                 got=str(list(self.scales_mm)))

    def to_dict(self) -> dict:
        return {"scales_mm": list(self.scales_mm), "encoder": self.encoder, "encoder_name": self.encoder_name}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureConfig":
        return cls(tuple(float(s) for s in data.get("scales_mm", (1.0, 2.0, 4.0))), str(data.get("encoder", "off")),
                   str(data.get("encoder_name", "encoder-v2")))


# -- intensity features --------------------------------------------------------------------------------------------
def normalise_channels(channels: np.ndarray, modalities: list[str | None] | None = None) -> np.ndarray:
    """`(C, I, J, K)` images -> float32 in ~[0, 1] per channel (`multimodalgen.intensity.normalize`)."""
    from multimodalgen.intensity import normalize

    modalities = modalities or [None] * channels.shape[0]
    return np.stack([normalize(c, m) for c, m in zip(channels, modalities)]).astype(np.float32)


def channel_statistics(normalised: np.ndarray) -> np.ndarray:
    """`(C, 2)` mean and standard deviation of each normalised channel over the whole volume."""
    stats = []
    for c in normalised:
        sample = c.ravel()[:: max(1, c.size // 1_000_000)]
        stats.append((float(sample.mean()), float(max(sample.std(), 1e-3))))
    return np.asarray(stats, np.float64)


def intensity_feature_count(n_channels: int, config: FeatureConfig) -> int:
    return n_channels * 3 * len(config.scales_mm)


def intensity_features(normalised: np.ndarray, stats: np.ndarray, spacing, config: FeatureConfig,
                       box: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None) -> np.ndarray:
    """Multi-scale intensity features of `(C, I, J, K)` normalised channels on `box` (start, stop) or everywhere.

    The filters run on the box grown by 3 sigma of the largest scale (clipped to the volume), so values on the box
    equal those computed on the whole volume up to the volume border handling. Returns `(F, *box_shape)` float32,
    F = C * 3 * len(scales): per channel and scale [smoothed, s * gradient magnitude, s^2 * Laplacian].
    """
    spacing = np.asarray(spacing, np.float64)
    shape = normalised.shape[1:]
    start, stop = box if box is not None else ((0, 0, 0), shape)
    pad = np.ceil(3.0 * max(config.scales_mm) / spacing).astype(int) + 1
    outer_lo = np.maximum(np.asarray(start) - pad, 0)
    outer_hi = np.minimum(np.asarray(stop) + pad, shape)
    inner = tuple(slice(int(a - b), int(c - b)) for a, b, c in zip(start, outer_lo, stop))
    region = tuple(slice(int(a), int(b)) for a, b in zip(outer_lo, outer_hi))
    box_shape = tuple(int(b - a) for a, b in zip(start, stop))
    feats = np.empty((intensity_feature_count(len(normalised), config),) + box_shape, np.float32)
    n = 0
    for c, (mean, std) in zip(normalised, stats):
        image = (c[region].astype(np.float32) - np.float32(mean)) / np.float32(std)
        for s in config.scales_mm:
            smooth = ndi.gaussian_filter(image, sigma=s / spacing, mode="nearest")
            feats[n] = smooth[inner]
            grads = np.gradient(smooth, *spacing)
            del smooth
            grad = grads[0] * grads[0]
            grad += grads[1] * grads[1]
            grad += grads[2] * grads[2]
            feats[n + 1] = s * np.sqrt(grad[inner])
            del grad
            lap = np.gradient(grads[0], spacing[0], axis=0)
            lap += np.gradient(grads[1], spacing[1], axis=1)
            lap += np.gradient(grads[2], spacing[2], axis=2)
            del grads
            feats[n + 2] = (s * s) * lap[inner]
            del lap
            n += 3
    return feats


# -- encoder features ---------------------------------------------------------------------------------------------
def encoder_weights_dir(config: FeatureConfig) -> Path:
    from multimodalgen.encoder.channels import parse_encoder_spec
    from multimodalgen.models.registry import DEFAULT_MODELS, shipped_models_dir

    return shipped_models_dir() / (parse_encoder_spec(config.encoder_name)[0] or DEFAULT_MODELS["encoder"])


def encoder_available(config: FeatureConfig) -> tuple[bool, str]:
    """(usable, reason): the encoder inference module imports and its shipped weights exist."""
    if config.encoder == "off":
        return False, "encoder features switched off"
    import importlib.util

    try:
        found = importlib.util.find_spec("multimodalgen.encoder.inference") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return False, "the encoder inference module is not in this build"
    folder = encoder_weights_dir(config)
    if not (folder / "config.json").is_file() or not any(p.suffix in (".safetensors", ".pt", ".pth")
                                                         for p in folder.iterdir()):
        return False, f"no encoder weights under {folder}"
    return True, f"encoder weights {folder.name}"


def require_encoder_if_asked(config: FeatureConfig) -> bool:
    """True when the encoder is to be used; raises when it was required ("on") but is unavailable."""
    ok, reason = encoder_available(config)
    if config.encoder == "on" and not ok:
        raise UserInputError("the foundation encoder was requested but cannot be used", got=reason,
                             fix="install the shipped encoder weights, or use encoder='auto' / 'off'")
    return ok


def encoder_features(volume_channels: list, device, model=None,
                     encoder_name: str | None = None) -> tuple[np.ndarray, object]:
    """Encoder features of each channel Volume (same grid): `(G * C, I, J, K)` float32 standardised (G = the
    channels of the group named in `encoder_name` "NAME[:GROUP]", 16 for all), and the model.

    `model` (already loaded) wins; otherwise the shipped encoder NAME (default: the default encoder)."""
    from multimodalgen.encoder.channels import parse_encoder_spec, spec_channels
    from multimodalgen.encoder.inference import features_for_volume

    if model is None:
        from multimodalgen.encoder.weights import load_encoder

        model = load_encoder(parse_encoder_spec(encoder_name)[0], device=device)
    first, stop = spec_channels(encoder_name, model.config.out_channels)
    out = []
    for vol in volume_channels:
        feats = features_for_volume(vol, model=model, device=device)
        arr = np.asarray(feats.array if hasattr(feats, "array") else feats, np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        arr = arr[first:stop]
        mean = arr.reshape(arr.shape[0], -1).mean(1)[:, None, None, None]
        std = arr.reshape(arr.shape[0], -1).std(1)[:, None, None, None] + 1e-3
        out.append((arr - mean) / std)
    return np.concatenate(out).astype(np.float32), model


# -- cache ---------------------------------------------------------------------------------------------------------
def content_hash(arrays: list[np.ndarray], affine: np.ndarray) -> str:
    """Hash of the image content and geometry (blake2b over the raw bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(memoryview(a).cast("B"))
    h.update(np.asarray(affine, np.float64).tobytes())
    return h.hexdigest()


class FeatureCache:
    """Keeps the features of recently used volumes (LRU, `max_entries`) keyed by (content hash, config, box)."""

    def __init__(self, max_entries: int = 4):
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    def lookup(self, key: str, config: FeatureConfig, box) -> np.ndarray | None:
        """Features for `box` from a cached box that contains it (a view), or None."""
        start, stop = (tuple(int(v) for v in b) for b in box)
        for (k, cfg, (s0, s1)), feats in reversed(self._entries.items()):
            if k == key and cfg == config and all(a >= b for a, b in zip(start, s0)) and \
                    all(a <= b for a, b in zip(stop, s1)):
                self.hits += 1
                self._entries.move_to_end((k, cfg, (s0, s1)))
                index = (slice(None),) + tuple(slice(a - b, c - b) for a, b, c in zip(start, s0, stop))
                return feats[index]
        self.misses += 1
        return None

    def store(self, key: str, config: FeatureConfig, box, features: np.ndarray) -> None:
        start, stop = (tuple(int(v) for v in b) for b in box)
        self._entries[(key, config, (start, stop))] = features
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class FeatureSource:
    """The features of one patient's image channels (same grid), computed on demand per box and cached.

    Args:
        channels: `(C, I, J, K)` image intensities (any float/int dtype).
        affine: the grid's voxel -> RAS affine.
        modalities: one name per channel ("T1", "CT", ...; None = unknown) for intensity normalisation.
        config: `FeatureConfig`.
        device: torch device for the encoder.
        cache: a shared `FeatureCache` (a private one when None).
        encoder_model: an encoder network to use instead of the shipped one (e.g. a checkpoint being evaluated).
    """

    def __init__(self, channels: np.ndarray, affine: np.ndarray, modalities: list[str | None] | None = None,
                 config: FeatureConfig | None = None, device="cpu", cache: FeatureCache | None = None,
                 encoder_model=None):
        self.config = config or FeatureConfig()
        self.affine = np.asarray(affine, np.float64)
        self.modalities = list(modalities or [None] * channels.shape[0])
        self.key = content_hash(list(channels), self.affine) + str(self.modalities)
        self.raw = channels
        self.normalised = normalise_channels(channels, self.modalities)
        self.stats = channel_statistics(self.normalised)
        self.spacing = np.linalg.norm(self.affine[:3, :3], axis=0)
        self.device = device
        self.cache = cache if cache is not None else FeatureCache()
        self.encoder_model = encoder_model
        if encoder_model is not None and self.config.encoder != "off":
            self.use_encoder, self.encoder_note = True, "encoder model given by the caller"
        else:
            self.use_encoder = require_encoder_if_asked(self.config)
            self.encoder_note = encoder_available(self.config)[1]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.normalised.shape[1:])  # type: ignore[return-value]

    @property
    def n_features(self) -> int:
        n = intensity_feature_count(self.normalised.shape[0], self.config)
        return n + (16 * self.normalised.shape[0] if self.use_encoder else 0)

    def features(self, box=None) -> np.ndarray:
        """`(F, *box_shape)` float32 features on `box` = (start, stop) voxel indices (None = whole volume)."""
        box = box or ((0, 0, 0), self.shape)
        cached = self.cache.lookup(self.key, self.config, box)
        if cached is not None:
            return cached
        feats = intensity_features(self.normalised, self.stats, self.spacing, self.config, box)
        if self.use_encoder:
            feats = np.concatenate([feats, self._encoder(box)])
        self.cache.store(self.key, self.config, box, feats)
        return feats

    def _encoder(self, box) -> np.ndarray:
        from multimodalgen.volume import Volume, crop_affine

        (start, stop) = box
        region = tuple(slice(a, b) for a, b in zip(start, stop))
        vols = [Volume(np.asarray(c[region], np.float32), crop_affine(self.affine, start), m)
                for c, m in zip(self.raw, self.modalities)]
        feats, self.encoder_model = encoder_features(vols, self.device, self.encoder_model, self.config.encoder_name)
        return feats
