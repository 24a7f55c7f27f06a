"""Contrastive pretraining of the encoder on the synthesis engine (no real images). Resumable.

    python -m multimodalgen.encoder.train --config C.json --out DIR [--resume] [--device auto] [--threads N]
    multimodalgen pretrain --config C.json --out DIR [--resume]          (same function)

Every step renders `batch_size` label maps x `engine.n_views` views with seeds derived from (seed, step), so a run
is replayable and a resumed run continues exactly where it stopped. `DIR/last.pt` (full checkpoint: network,
heads, optimiser, step, configs) is written atomically every `checkpoint_every` steps and snapshots
`DIR/step_XXXXXXX.pt` every `snapshot_every` steps. `DIR/train_log.jsonl` gets one JSON line per `log_every`
steps (loss, per-level losses, lr, samples/s, seconds per step). `DIR/config.json` is the resolved config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from multimodalgen.encoder.loss import feature_distillation_loss, make_heads, multilevel_contrastive_loss
from multimodalgen.encoder.network import UNet3D, UNetConfig
from multimodalgen.synthesis.config import ENGINE_VERSION, EngineConfig
from multimodalgen.synthesis.labels import ROLE_NAMES
from multimodalgen.synthesis.views import generate_batch

CHECKPOINT_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Pretraining run configuration (a JSON file; unknown keys are errors)."""

    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)
    network: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    steps: int = 10000
    batch_size: int = 1               # label maps per step (each rendered as engine.n_views views)
    n_voxels: int = 256               # sampled positions per sample and level
    temperature: float = 0.33
    identity_weight: float = 0.0      # voxel identity InfoNCE term (see encoder.loss), 0 = pure SupCon
    identity_temperature: float = 0.2
    role_weight: float = 0.0          # anatomical-role cross-entropy on layered phantoms (see `role_loss`), 0 = off
    amp: bool = False                 # bf16 autocast of the network's forward pass on CUDA (ignored on CPU)
    proj_dim: int = 128
    lr: float = 1e-3
    min_lr_fraction: float = 0.05     # cosine decay from lr to lr * this over `steps`
    warmup_steps: int = 100
    weight_decay: float = 1e-5
    grad_clip: float = 5.0
    seed: int = 0
    init_from: str = ""               # optional: network weights to start from (training checkpoint or encoder folder)
    label_dir: str = ""               # synth-2: a prepared label folder (synthesis.prepare_labels); "" = phantoms only
    p_head: float = 0.0               # synth-2: fraction of samples drawn as real-anatomy heads (needs label_dir)
    distill_from: str = ""            # frozen teacher encoder (folder or checkpoint) whose output features are kept
    distill_weight: float = 0.0       # weight of `loss.feature_distillation_loss` against the teacher, 0 = off
    distill_channels: int = 0         # distil only output channels [0, n) (0 = all)
    role_channels: int = 0            # the role classifier reads only the last n output channels (0 = all)
    frozen_channels: int = 0          # keep outputs [0, n) exactly as initialised (see `FrozenOutputs`), 0 = off
    checkpoint_every: int = 25
    snapshot_every: int = 500
    log_every: int = 5

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.n_voxels < 4:
            raise ValueError("steps, batch_size must be >= 1 and n_voxels >= 4")
        if self.engine.n_views < 2:
            raise ValueError("contrastive pretraining needs engine.n_views >= 2")
        if not 0 < self.temperature <= 10 or self.lr <= 0:
            raise ValueError("temperature must be in (0, 10] and lr > 0")
        if self.p_head > 0 and not self.label_dir:
            raise ValueError("p_head > 0 needs label_dir (a folder made by multimodalgen.synthesis.prepare_labels)")
        if self.distill_weight > 0 and not self.distill_from:
            raise ValueError("distill_weight > 0 needs distill_from (an encoder folder or a pretraining checkpoint)")
        n_out = self.network.out_channels
        if not 0 <= self.distill_channels <= n_out or not 0 <= self.role_channels <= n_out:
            raise ValueError(f"distill_channels and role_channels must be in [0, {n_out}] (0 = all channels)")
        if self.distill_channels and self.role_channels and self.distill_channels + self.role_channels > n_out:
            raise ValueError("distill_channels + role_channels overlap: the distilled channels [0, distill_channels) "
                             "and the role channels (the last role_channels) must be disjoint")
        if self.frozen_channels and not (0 < self.frozen_channels < n_out
                                         and self.network.final_width > self.network.widths[0] and self.init_from):
            raise ValueError("frozen_channels needs 0 < frozen_channels < out_channels, network.head_width wider than "
                             "widths[0] (the added channels are what trains) and init_from (the model it keeps)")
        if any(s % self.network.divisor for s in self.engine.shape):
            raise ValueError(f"engine.shape {self.engine.shape} must be multiples of {self.network.divisor}")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["engine"] = self.engine.to_dict()
        out["network"] = self.network.to_dict()
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PretrainConfig":
        from multimodalgen.config_dict import checked_fields

        data = checked_fields(cls, data, "pretraining config")
        engine = EngineConfig.from_dict(data.pop("engine", {}))
        network = UNetConfig.from_dict(data.pop("network", {}))
        return cls(engine=engine, network=network, **data)

    @classmethod
    def from_json(cls, path: str | Path) -> "PretrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def role_loss(classifier: torch.nn.Module, features: torch.Tensor, roles: torch.Tensor) -> torch.Tensor | None:
    """Class-balanced cross-entropy of a linear role classifier on the output features.

    features `(N, 16, I, J, K)`, roles `(N, I, J, K)` int64 (-1 = ignored; see `synthesis.labels.label_roles`).
    Returns None when no voxel has a role. Layered phantoms give their bands the same roles in every sample, so
    this asks the features to tell outer fluid / ribbon / core apart linearly in any contrast (SynthSeg-style
    domain randomisation, no real data); the SupCon term keeps every other structure distinct."""
    valid = roles >= 0
    if not bool(valid.any()):
        return None
    logits = classifier(features)
    counts = torch.bincount(roles[valid], minlength=logits.shape[1]).float()
    weight = torch.where(counts > 0, counts.sum() / (counts.clamp_min(1) * (counts > 0).sum()), counts)
    return torch.nn.functional.cross_entropy(logits, roles, weight=weight, ignore_index=-1)


class FrozenOutputs:
    """Keeps output channels `[0, n)` of a grown network exactly as initialised while the rest trains.

    A network grown by `grow_state` has a wider last full-resolution conv (`up0`, `network.head_width`) and possibly
    a wider 1/2-resolution decoder block (`up.0`, `network.half_width`): a side column beside the original channels
    (a progressive network). With `frozen_channels = n`, every other module does not train; the original rows of
    the grown modules (the first `widths[0]` / `widths[1]` channels, whose weights on the added input channels are
    zero) and the head rows `[0, n)` are restored after every optimiser step; and the network runs in eval mode
    (BatchNorm statistics fixed). So outputs `[0, n)` stay the initialising encoder's (bit for bit after growing; growing itself changes
    them only by float rounding, ~1e-6, from the zero weights on the added channels), and only the added
    channels and the head rows `n..` learn: a new objective gets its own capacity instead of competing with the
    old one for the same channels."""

    def __init__(self, model: UNet3D, n: int) -> None:
        cfg = model.config
        grown = {"up0.": cfg.widths[0], "head.": n}
        if cfg.half_width:
            grown["up.0."] = cfg.widths[1]
        self.keep = []
        for name, p in model.named_parameters():
            prefix = next((g for g in grown if name.startswith(g)), None)
            if prefix is None:
                p.requires_grad_(False)
            else:
                self.keep.append((p, p.detach()[:grown[prefix]].clone(), grown[prefix]))

    @torch.no_grad()
    def restore(self) -> None:
        for p, value, rows in self.keep:
            p[:rows] = value


def grow_state(model: UNet3D, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` of a network fitted to `model`, a copy of it with a wider `up0` (head_width) and/or `up.0`
    (half_width) block. Tensors of equal shape are taken as they are. In a larger tensor the old values go to the
    old rows and input channels (the skip channels of `up0` move behind the widened 1/2-resolution channels), the
    old rows get zero weight on the added input channels, and the output head gets zero weight on them in every
    row, so the grown network computes the same outputs as the one it grew from; added rows keep `model`'s
    random initialisation. Raises ValueError on missing keys or a tensor larger than the model's."""
    target = model.state_dict()
    if set(target) != set(state):
        raise ValueError(f"cannot grow: parameter names differ ({sorted(set(target) ^ set(state))[:4]})")
    out = {}
    for key, value in state.items():
        t = target[key].clone()
        if value.shape == t.shape:
            out[key] = value.to(t.dtype)
            continue
        if value.dim() != t.dim() or any(a > b for a, b in zip(value.shape, t.shape)):
            raise ValueError(f"cannot grow {key}: {tuple(value.shape)} does not fit in {tuple(t.shape)}")
        rows = value.shape[0]
        if value.dim() < 2:
            t[:rows] = value.to(t.dtype)
            out[key] = t
            continue
        cols_old, cols_new = value.shape[1], t.shape[1]
        if key == "up0.0.weight" and cols_new != cols_old:           # input = [1/2-res decoder, full-res skip]
            w0 = model.config.widths[0]
            col_map = list(range(cols_old - w0)) + list(range(cols_new - w0, cols_new))
        else:
            col_map = list(range(cols_old))
        added = sorted(set(range(cols_new)) - set(col_map))
        t[:rows, col_map] = value.to(t.dtype)
        t[:t.shape[0] if key == "head.weight" else rows, added] = 0.0
        out[key] = t
    return out


def learning_rate(cfg: PretrainConfig, step: int) -> float:
    """Linear warm-up then cosine decay to `lr * min_lr_fraction` at `steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t)))


def build(cfg: PretrainConfig, device: torch.device) -> tuple[UNet3D, torch.nn.ModuleList, torch.optim.Optimizer]:
    """Network, training heads and optimiser for `cfg` (deterministic initialisation from `cfg.seed`).

    The heads are one projection head per level, plus (with `role_weight > 0`) a last entry: a linear 1x1x1
    role classifier on the output channels (the last `role_channels` of them when set). Heads are training-only and
    never shipped."""
    torch.manual_seed(cfg.seed)
    model = UNet3D(cfg.network).to(device)
    heads = make_heads(model.level_channels(), cfg.proj_dim)
    if cfg.role_weight > 0:
        heads.append(torch.nn.Conv3d(cfg.role_channels or cfg.network.out_channels, len(ROLE_NAMES), 1))
    heads = heads.to(device)
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    return model, heads, opt


def initial_weights(source: str | Path, device: torch.device, field: str = "init_from") -> dict[str, torch.Tensor]:
    """Float32 network state dict from a training checkpoint (`*.pt` with a "model" entry) or a shipped encoder
    folder (a model artifact of kind "encoder", sha256 verified), for `PretrainConfig.init_from` (or the config
    `field` named in errors, e.g. distill_from)."""
    path = Path(source)
    if path.is_dir():
        from multimodalgen.models.artifact import read_artifact

        return {k: v.float() if v.is_floating_point() else v for k, v in read_artifact(path, "encoder")[1].items()}
    if not path.is_file():
        raise FileNotFoundError(f"{field} {str(path)!r} is neither a checkpoint file nor an encoder folder")
    state = load_checkpoint(path, device)
    if "model" not in state:
        raise ValueError(f"{field} {str(path)!r} has no 'model' entry; expected a pretraining checkpoint")
    return {k: v.float() for k, v in state["model"].items()}


def save_checkpoint(path: Path, cfg: PretrainConfig, step: int, model: UNet3D, heads: torch.nn.Module,
                    opt: torch.optim.Optimizer) -> None:
    """Atomically write a full checkpoint (tensors + plain types only; loadable with weights_only=True)."""
    state = {"format": CHECKPOINT_FORMAT, "engine_version": engine_version(cfg), "step": step,
             "config": cfg.to_dict(), "model": model.state_dict(), "heads": heads.state_dict(),
             "optimizer": opt.state_dict()}
    from multimodalgen.io.writers import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (weights_only=True)."""
    return torch.load(path, map_location=device, weights_only=True)


def engine_version(cfg: PretrainConfig) -> str:
    """The data engine(s) a run draws from: synth-1 ensembles, plus synth-2 heads when `p_head` > 0."""
    if cfg.p_head > 0:
        from multimodalgen.synthesis.subjects import SYNTH2_VERSION

        return f"{ENGINE_VERSION}+{SYNTH2_VERSION}"
    return ENGINE_VERSION


def make_batch(cfg: PretrainConfig, seeds: list[int], device: torch.device, heads_sampler=None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, labels and roles `(B, V, I, J, K)` for `seeds`: each sample is a synth-2 head (probability
    `cfg.p_head`, `synthesis.head_views`) or a synth-1 label ensemble (`synthesis.views`)."""
    if heads_sampler is None or cfg.p_head <= 0:
        return generate_batch(cfg.engine, seeds, device, with_roles=True)
    import numpy as np

    from multimodalgen.synthesis.head_views import render_head_views
    from multimodalgen.synthesis.views import render_sample_with_roles, sample_params

    out = []
    for seed in seeds:
        if np.random.default_rng([seed, 7]).random() < cfg.p_head:
            out.append(tuple(t.to(device) for t in render_head_views(heads_sampler, seed, cfg.engine.shape,
                                                                     cfg.engine.n_views)))
        else:
            out.append(render_sample_with_roles(sample_params(cfg.engine, seed), device))
    return tuple(torch.stack([o[i] for o in out]) for i in range(3))


def head_sampler(cfg: PretrainConfig, device: torch.device):
    """The synth-2 head sampler of a run (None without `label_dir`); reads the label folder once."""
    if not cfg.label_dir or cfg.p_head <= 0:
        return None
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler

    return HeadSubjectSampler(read_label_folder(cfg.label_dir), device)


def distillation_teacher(cfg: PretrainConfig, device: torch.device) -> UNet3D | None:
    """The frozen, eval-mode teacher of `cfg.distill_from` (None when distillation is off).

    The teacher has the student's network config: distillation keeps the student's features where it started."""
    if cfg.distill_weight <= 0:
        return None
    teacher = UNet3D(cfg.network).to(device)
    teacher.load_state_dict(initial_weights(cfg.distill_from, device, "distill_from"))
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def train_step(cfg: PretrainConfig, step: int, model: UNet3D, heads: torch.nn.ModuleList,
               opt: torch.optim.Optimizer, device: torch.device, heads_sampler=None,
               teacher: UNet3D | None = None, frozen: FrozenOutputs | None = None) -> dict[str, Any]:
    """One optimisation step (data for `step` is a pure function of cfg.seed and step). Returns log values."""
    t0 = time.perf_counter()
    base = (cfg.seed * 1_000_003 + step) * cfg.batch_size
    images, labels, roles = make_batch(cfg, [base + i for i in range(cfg.batch_size)], device, heads_sampler)
    t_data = time.perf_counter() - t0
    b, v = images.shape[:2]
    x = images.reshape(b * v, 1, *images.shape[2:])
    lr = learning_rate(cfg, step)
    for group in opt.param_groups:
        group["lr"] = lr
    model.train(not cfg.frozen_channels)          # frozen outputs: BatchNorm statistics stay those of the init
    heads.train()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
        out, levels = model(x, return_levels=True)
    out, levels = out.float(), [level.float() for level in levels]   # losses in float32
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed * 7919 + step)
    role_classifier = heads[len(levels)] if cfg.role_weight > 0 else None   # after the per-level projection heads
    proj_heads = heads[:len(levels)]
    if cfg.frozen_channels:                       # only the output level has anything left to train
        levels, proj_heads = levels[-1:], proj_heads[-1:]
    loss, per_level = multilevel_contrastive_loss(levels, labels, proj_heads, cfg.n_voxels, cfg.temperature, gen,
                                                  cfg.identity_weight, cfg.identity_temperature)
    role_value = None
    if cfg.role_weight > 0:
        role_feats = out[:, out.shape[1] - cfg.role_channels:] if cfg.role_channels else out
        role = role_loss(role_classifier, role_feats, roles.reshape(b * v, *roles.shape[2:]))
        if role is not None:
            loss = loss + cfg.role_weight * role
            role_value = round(float(role.detach()), 4)
    distill_value = None
    if teacher is not None:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            target = teacher(x).float()
        n = cfg.distill_channels or out.shape[1]
        distill = feature_distillation_loss(out[:, :n], target[:, :n])
        loss = loss + cfg.distill_weight * distill
        distill_value = round(float(distill.detach()), 4)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(heads.parameters()), cfg.grad_clip)
    opt.step()
    if frozen is not None:
        frozen.restore()
    dt = time.perf_counter() - t0
    return {"step": step + 1, "loss": float(loss.detach()), "levels": [round(v_, 4) for v_ in per_level],
            "lr": lr, "grad_norm": float(grad_norm), "sec_per_step": round(dt, 3), "data_sec": round(t_data, 3),
            "samples_per_sec": round(b / dt, 3), "n_labels": int(labels.max()) + 1, "role": role_value,
            "distill": distill_value}


def pretrain(cfg: PretrainConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
             max_steps: int | None = None, log: Callable[[dict[str, Any]], None] | None = None,
             progress=None) -> dict[str, Any]:
    """Run (or resume) pretraining into `out_dir` until `cfg.steps` (or `max_steps` more steps in this call).

    Returns the final state dict summary `{"step": ..., "loss": ...}`. `progress` is an optional
    `multimodalgen.progress.Progress` (update + check_cancelled each step).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True   # fixed input shapes: let cuDNN pick the fastest kernels
    sampler = head_sampler(cfg, device)            # validates the label folder before anything is written
    teacher = distillation_teacher(cfg, device)    # also validates distill_from before anything is written
    model, heads, opt = build(cfg, device)
    step = 0
    if cfg.init_from and not (resume and last.exists()):
        model.load_state_dict(grow_state(model, initial_weights(cfg.init_from, device)))
    if resume and last.exists():
        state = load_checkpoint(last, device)
        if PretrainConfig.from_dict(state["config"]).to_dict() != cfg.to_dict():   # defaults of newer fields filled
            raise ValueError(f"{last} was written with a different config; use the same --config or a new --out")
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    elif last.exists():
        raise FileExistsError(f"{last} exists: pass --resume to continue it, or choose another --out")
    frozen = FrozenOutputs(model, cfg.frozen_channels) if cfg.frozen_channels else None
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    stop = cfg.steps if max_steps is None else min(cfg.steps, step + max_steps)
    log_file = (out / "train_log.jsonl").open("a")
    record: dict[str, Any] = {"step": step, "loss": None}
    try:
        while step < stop:
            if progress is not None:
                progress.check_cancelled()
            record = train_step(cfg, step, model, heads, opt, device, sampler, teacher, frozen)
            step += 1
            if step % cfg.log_every == 0 or step == stop:
                record["time"] = time.time()
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                if log is not None:
                    log(record)
            if progress is not None:
                progress.update("pretrain", step / cfg.steps, f"step {step} loss {record['loss']:.4f}")
            if step % cfg.checkpoint_every == 0 or step == stop:
                save_checkpoint(last, cfg, step, model, heads, opt)
            if step % cfg.snapshot_every == 0:
                save_checkpoint(out / f"step_{step:07d}.pt", cfg, step, model, heads, opt)
    finally:
        log_file.close()
    return {"step": step, "loss": record["loss"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Contrastive pretraining of the MultiModalGen encoder.")
    parser.add_argument("--config", required=True, help="pretraining config JSON (PretrainConfig fields)")
    parser.add_argument("--out", required=True, help="output folder for checkpoints and logs")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda (auto: CUDA when present)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in this call")
    args = parser.parse_args(argv)
    from multimodalgen.device import resolve_device, set_threads

    set_threads(args.threads)
    cfg = PretrainConfig.from_json(args.config)

    device = resolve_device(args.device)
    print(json.dumps({"device": str(device), "threads": torch.get_num_threads(), "engine": ENGINE_VERSION}),
          flush=True)
    result = pretrain(cfg, args.out, device, resume=args.resume, max_steps=args.max_steps,
                      log=lambda r: print(json.dumps(r), flush=True))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
