"""The light per-voxel head: a small MLP (= a stack of 1x1x1 convolutions) on the voxel features.

It maps `(N, F)` standardised features to `(N, 1 + L)` class logits (0 = background, then one per label). Training
takes seconds on CPU: class-balanced cross-entropy on voxels of the annotated slices, with augmentation sampled per
batch (Gaussian feature noise and a random per-feature gain, i.e. contrast/brightness changes of every filter
response), then applied deterministically. Continuing training from a previous head (interactive updates) uses the
same function with fewer steps.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from multimodalgen.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Head architecture and training schedule (saved in task files).

    Attributes:
        hidden: width of the hidden layers.
        layers: number of hidden layers.
        steps: optimisation steps of a first training.
        update_steps: steps when continuing from a previous head (incremental update).
        preview_steps: steps when continuing for a preview (after a stroke; `segment()` then continues further).
        batch: voxels per step (half drawn per class-balanced weights).
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        noise: std of the Gaussian noise added to standardised features (augmentation).
        gain: half-width of the random per-feature gain `1 +- gain` (augmentation).
        dropout: dropout on the hidden layers during training.
    """

    hidden: int = 32
    layers: int = 2
    steps: int = 200
    update_steps: int = 80
    preview_steps: int = 30
    batch: int = 1024
    lr: float = 1e-2
    weight_decay: float = 1e-3
    noise: float = 0.15
    gain: float = 0.15
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 0 or self.steps < 1 or self.update_steps < 0 or self.batch < 1:
            raise UserInputError("invalid head configuration", expected="positive sizes and step counts",
                                 got=str(dataclasses.asdict(self)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HeadConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def build_head(n_features: int, n_classes: int, config: HeadConfig, seed: int = 0):
    """A fresh head (torch `nn.Sequential`), initialised from `seed`."""
    import torch
    from torch import nn

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers: list = []
        width = n_features
        for _ in range(config.layers):
            layers += [nn.Linear(width, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = config.hidden
        layers.append(nn.Linear(width, n_classes))
        head = nn.Sequential(*layers)
    finally:
        torch.random.set_rng_state(generator_state)
    return head


def sample_augmentation(generator, batch: int, n_features: int, config: HeadConfig) -> dict:
    """Random augmentation parameters for one batch: per-feature gain `(F,)` and noise `(batch, F)`."""
    import torch

    gain = 1.0 + config.gain * (2.0 * torch.rand(n_features, generator=generator) - 1.0)
    noise = config.noise * torch.randn(batch, n_features, generator=generator)
    return {"gain": gain, "noise": noise}


def augment(x, params: dict):
    """Deterministic augmentation of a `(B, F)` batch with sampled parameters."""
    return x * params["gain"][None, :] + params["noise"]


def train_head(head, x: np.ndarray, y: np.ndarray, config: HeadConfig, *, steps: int | None = None,
               seed: int = 0, device="cpu", sample_weight: np.ndarray | None = None, progress=None) -> dict:
    """Train `head` in place on voxels `x` `(N, F)` float32 with classes `y` `(N,)` int64.

    Batches are drawn with class-balanced probabilities (times `sample_weight` when given). Returns a small log
    (steps, final loss).
    """
    import torch

    if x.shape[0] == 0:
        raise UserInputError("no training voxels", expected="annotated voxels", got="none")
    steps = config.steps if steps is None else steps
    generator = torch.Generator().manual_seed(int(seed))
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    counts = np.bincount(y, minlength=int(y.max()) + 1).astype(np.float64)
    prob = 1.0 / np.maximum(counts[y], 1.0)
    if sample_weight is not None:
        prob = prob * sample_weight
    prob = torch.as_tensor(prob / prob.sum(), dtype=torch.float64)
    batch = min(config.batch, max(64, x.shape[0]))
    all_idx = torch.multinomial(prob, batch * steps, replacement=True, generator=generator).view(steps, batch)
    head.to(device).train()
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(1, steps))
    loss_value = float("nan")
    with _single_thread(device), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))  # dropout draws from the global generator: seeded, then restored
        for step in range(steps):
            idx = all_idx[step]
            params = sample_augmentation(generator, batch, x.shape[1], config)
            xb = augment(xt[idx], params).to(device)
            yb = yt[idx].to(device)
            loss = torch.nn.functional.cross_entropy(head(xb), yb, label_smoothing=0.05)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if progress is not None and step % 25 == 0:
                loss_value = float(loss.detach())
                progress.update("training", step / steps, f"loss {loss_value:.3f}")
        loss_value = float(loss.detach())
    head.eval()
    return {"steps": steps, "loss": loss_value}


@contextlib.contextmanager
def _single_thread(device):
    """Run tiny CPU training steps on one thread (faster than several threads, and robust on a busy machine)."""
    import torch

    if str(device).startswith("cuda"):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def predict_logits(head, features: np.ndarray, *, device="cpu", mask: np.ndarray | None = None,
                   chunk: int = 524_288) -> np.ndarray:
    """Class logits `(n_classes, *spatial)` float32 of `(F, *spatial)` features (0 where `mask` is False)."""
    import torch

    n_features = features.shape[0]
    spatial = features.shape[1:]
    flat = features.reshape(n_features, -1)
    select = np.flatnonzero(mask.ravel()) if mask is not None else None
    n = flat.shape[1] if select is None else select.size
    n_classes = head[-1].out_features
    out = np.zeros((n_classes, int(np.prod(spatial))), np.float32)
    head.to(device).eval()
    linear = [(m.weight.detach(), m.bias.detach()) for m in head if isinstance(m, torch.nn.Linear)]
    with torch.inference_mode():
        for a in range(0, n, chunk):
            cols = slice(a, min(n, a + chunk)) if select is None else select[a:a + chunk]
            x = torch.as_tensor(np.ascontiguousarray(flat[:, cols].T), dtype=torch.float32).to(device)
            for i, (w, b) in enumerate(linear):  # eval forward: Linear, ReLU (in place); dropout is identity
                x = torch.nn.functional.linear(x, w, b)
                if i < len(linear) - 1:
                    x.relu_()
            out[:, cols] = x.float().cpu().numpy().T
    return out.reshape((n_classes,) + tuple(spatial))
