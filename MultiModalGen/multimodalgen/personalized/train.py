"""Training of personalized models (and the benchmark baselines) on synthetic same-subject multi-contrast data.

    python -m multimodalgen.personalized.train --config C.json --out DIR [--device auto] [--threads N]

Each step renders `batch_size` subjects (seeds derived from (seed, step), so a run is replayable and resumes
exactly): with `label_dir` set, synth-2 head subjects drawn from a folder of real label maps (`head_data`, made by
`multimodalgen.synthesis.prepare_labels`); otherwise the synth-1 phantoms of `synthetic.sample_subject`. It drops modalities at random (each kept with `p_keep`, at least one; "single":
exactly one; "all": none dropped) and minimises

    L = w_seg L_seg(X_h(S)) + w_rec L_rec(g(X_h(S)), all modalities) + w_inv L_inv(z_S) + w_prior L_prior
        [+ MR-Pretrain: w_mr (masked L1 + feature regression to the unmasked teacher)]   [GM-Coord on z]

`DIR/last.pt` (model, optimiser, step, config) is written atomically every `checkpoint_every` steps and at the
end; `DIR/train_log.jsonl` gets a JSON line every `log_every` steps. Held-out evaluation seeds start at
`EVAL_SEED_BASE`, never reached by training seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from multimodalgen.personalized.baselines import ConcatNet
from multimodalgen.personalized.config import PersonalizedConfig
from multimodalgen.personalized.losses import (feature_reconstruction_loss, gm_coord_coefficients, invariance_loss,
                                               masked_reconstruction_loss, prior_loss, random_patch_mask,
                                               reconstruction_loss, scale_gradient, segmentation_loss)
from multimodalgen.personalized.model import PersonalizedNet
from multimodalgen.personalized.synthetic import SYNTH_VERSION, sample_batch
from multimodalgen.progress import Progress
from multimodalgen.synthesis.head import MAX_OFFSET_MM

EVAL_SEED_BASE = 900_000_000
KINDS = ("xh", "concat")
SUBSETS = ("random", "single", "all")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run (JSON file; unknown keys are errors)."""

    kind: str = "xh"                  # "xh" (PersonalizedNet) or "concat" (early-fusion baseline)
    model: PersonalizedConfig = dataclasses.field(default_factory=PersonalizedConfig)
    shape: tuple[int, int, int] = (32, 32, 32)
    steps: int = 600
    batch_size: int = 1
    lr: float = 2e-3
    weight_decay: float = 1e-5
    seed: int = 0
    subset: str = "random"
    p_keep: float = 0.5
    w_seg: float = 1.0
    w_rec: float = 1.0
    w_inv: float = 0.1
    w_prior: float = 0.01
    mr_pretrain: bool = False
    mask_ratio: float = 0.75
    w_mr: float = 0.5
    gm_coord: bool = False
    gm_eta: float = 0.3
    init_encoder: str | None = None
    init_model: str | None = None     # a personalized model folder whose matching tensors initialise the network
    label_dir: str | None = None      # synth-2 head subjects from this prepared label folder (None: synth-1 phantoms)
    p_partial: float = 0.2            # synth-2: probability of a cut field of view
    p_epi: float = 0.1                # synth-2: probability that an MR image is EPI-like
    p_template: float = 0.0           # synth-2.1: probability of a smoothed subject labelled at its resolution
    max_offset_mm: float = MAX_OFFSET_MM   # synth-2: crop centre within this many mm of the brain's, per axis
    template_brain_share: float = 0.0      # synth-2.4: SPM's brain rule for template classes (0 = plain argmax)
    template_sulcal_csf_shift: float = 0.0  # synth-2.4: sulcal-CSF log-bias added to population-template members
    max_present: int = 0              # at most this many modalities per subject and step (0 = no cap)
    p_single: float = 0.0             # probability that a subject's step sees exactly one modality (uniform pick)
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.subset not in SUBSETS:
            raise ValueError(f"kind must be in {KINDS} and subset in {SUBSETS}")
        if self.max_offset_mm < 0:
            raise ValueError(f"max_offset_mm must be >= 0 mm, got {self.max_offset_mm}")
        if self.steps < 1 or self.batch_size < 1 or not 0.0 < self.p_keep <= 1.0:
            raise ValueError("steps and batch_size must be >= 1 and p_keep in (0, 1]")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError("mask_ratio must be in (0, 1)")
        if not 0.0 <= self.p_single <= 1.0:
            raise ValueError(f"p_single must be in [0, 1] (0 = off), got {self.p_single}")
        if not 0.0 <= self.template_brain_share <= 1.0:
            raise ValueError(f"template_brain_share must be in [0, 1] (0 = off), got {self.template_brain_share}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        if set(data) - known:
            raise ValueError(f"unknown TrainConfig keys {sorted(set(data) - known)}")
        if "model" in data:
            data["model"] = PersonalizedConfig.from_dict(data["model"])
        if "shape" in data:
            data["shape"] = tuple(data["shape"])
        return cls(**data)


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The network of a run, with the foundation encoder's weights if `init_encoder` is set."""
    from multimodalgen.personalized.foundation import load_into, read_foundation_state

    model = PersonalizedNet(cfg.model) if cfg.kind == "xh" else ConcatNet(cfg.model)
    if cfg.init_model:
        from multimodalgen.personalized.weights import load_model

        source, _ = load_model(cfg.init_model)
        load_matching(model, source.state_dict())
    if cfg.init_encoder:
        state = read_foundation_state(cfg.init_encoder)
        load_into(model.encoder, state, tile_stem_to=len(cfg.model.modalities) if cfg.kind == "concat" else None)
    return model


def load_matching(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy the tensors of `state` whose name and shape match into `model`; returns the names that did not fit.
    Modality embeddings are matched row by row (per-modality decoders module by module, by name), so a model with
    more modalities starts from one with fewer (same order)."""
    from multimodalgen.personalized.foundation import load_into

    skipped = load_into(model, state)
    key = "modality_embedding"
    own = model.state_dict()
    if key in skipped and key in own and own[key].shape[1:] == state[key].shape[1:]:
        n = min(own[key].shape[0], state[key].shape[0])
        with torch.no_grad():
            own[key][:n].copy_(state[key][:n])
        skipped.remove(key)
    return skipped


def sample_present(gen: torch.Generator, batch: int, m: int, mode: str, p_keep: float, max_present: int = 0,
                   p_single: float = 0.0) -> torch.Tensor:
    """Random modality subsets `(B, M)` bool, never empty (at most `max_present` per row when > 0).

    With `p_single` > 0 each row is, with that probability, replaced by one modality picked uniformly: the
    single-modality inputs (a T1 alone, a CT alone) that random dropout draws rarely (p_keep .45 of 6 modalities,
    capped at 3: 16 % of steps, one modality 2.7 %). With `p_single` = 0 the random stream is unchanged."""
    if mode == "all":
        return torch.ones(batch, m, dtype=torch.bool)
    if mode == "single":
        pick = torch.randint(0, m, (batch,), generator=gen)
        return torch.nn.functional.one_hot(pick, m).bool()
    scores = torch.rand(batch, m, generator=gen)
    keep = scores < p_keep
    if max_present > 0:  # the lowest-scoring modality is always kept, then at most max_present of the lowest
        rank = scores.argsort(dim=1).argsort(dim=1)
        keep = (keep | (rank == 0)) & (rank < max_present)
    else:
        empty = ~keep.any(dim=1)
        if bool(empty.any()):
            pick = torch.randint(0, m, (batch,), generator=gen)
            keep[empty, pick[empty]] = True
    if p_single > 0:
        single = torch.rand(batch, generator=gen) < p_single
        pick = torch.nn.functional.one_hot(torch.randint(0, m, (batch,), generator=gen), m).bool()
        keep = torch.where(single[:, None], pick, keep)
    return keep


def training_losses(model, cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor | None,
                    present: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """All loss terms of one step (label-free terms only when `labels` is None). images `(B, M, ...)`."""
    losses: dict[str, torch.Tensor] = {}
    if cfg.kind == "concat":
        losses["seg"] = segmentation_loss(model(images, present)["logits"], labels)
        return losses
    available = torch.ones_like(present)
    z = model.encode(images, present)
    if cfg.gm_coord and labels is not None:
        z = scale_gradient(z, gm_coord_coefficients(model, z, present, labels, cfg.gm_eta))
    xh = model.fuse(z, present)
    if labels is not None and cfg.w_seg > 0:
        losses["seg"] = cfg.w_seg * segmentation_loss(model.segment_logits(xh), labels)
    if cfg.w_rec > 0:
        losses["rec"] = cfg.w_rec * reconstruction_loss(model.reconstruct(xh), images, available)
    if cfg.w_inv > 0 and int(present.sum(dim=1).max()) > 1:
        losses["inv"] = cfg.w_inv * invariance_loss(z, present)
    if cfg.w_prior > 0:
        losses["prior"] = cfg.w_prior * prior_loss(xh, model.prior_map(tuple(xh.shape[2:])))
    if cfg.mr_pretrain:
        mask = random_patch_mask(tuple(images.shape), cfg.mask_ratio, 4, gen, images.device)
        z_masked = model.encode(images.masked_fill(mask, 0.0), present)
        recon = model.reconstruct(model.fuse(z_masked, present))
        losses["mr"] = cfg.w_mr * (masked_reconstruction_loss(recon, images, mask, present)
                                   + feature_reconstruction_loss(z_masked, z, present))
    return losses


def _save(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically (`io.atomic_path`: temp file, fsync, rename; nothing left on error)."""
    from multimodalgen.io.writers import atomic_path

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def train(cfg: TrainConfig, out_dir: str | Path, device: torch.device | str = "cpu",
          progress: Progress | None = None, resume: bool = True, max_seconds: float | None = None
          ) -> torch.nn.Module:
    """Run (or resume) a training run; returns the trained model (eval mode, on `device`).

    `max_seconds`: stop after the first step past this many seconds of this call, with a checkpoint written
    (a later call resumes from it): for time-boxed GPU loans and session ends."""
    progress = progress or Progress.null()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    batches = None
    if cfg.label_dir:
        from multimodalgen.personalized.head_data import HeadBatches

        batches = HeadBatches(cfg.label_dir, cfg.model.modalities, cfg.model.working_spacing, cfg.model.ct_window,
                              cfg.p_partial, cfg.p_epi, cfg.p_template, device=device,
                              max_offset_mm=cfg.max_offset_mm,
                              template_brain_share=cfg.template_brain_share,
                              template_sulcal_csf_shift=cfg.template_sulcal_csf_shift)   # rendered on `device`
    synth_version = _synth_version(cfg)
    start = 0
    ckpt = out / "last.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    m = len(cfg.model.modalities)
    log = open(out / "train_log.jsonl", "a", encoding="utf-8")
    model.train()
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        lr = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        seeds = [cfg.seed * 10_000_000 + step * cfg.batch_size + i for i in range(cfg.batch_size)]
        if batches is not None:
            images, labels = batches.batch(seeds, cfg.shape)
        else:
            images, labels = sample_batch(seeds, cfg.shape, cfg.model.modalities)
        images, labels = images.to(device), labels.to(device)
        present = sample_present(gen, cfg.batch_size, m, cfg.subset, cfg.p_keep, cfg.max_present,
                                 cfg.p_single).to(device)
        losses = training_losses(model, cfg, images, labels, present, gen)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            row = {"step": done, "loss": float(loss.detach()),
                   **{k: round(float(v.detach()), 5) for k, v in losses.items()},
                   "lr": lr, "sec": round(time.perf_counter() - t0, 1)}
            log.write(json.dumps(row) + "\n")
            log.flush()
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            _save(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": done,
                         "config": cfg.to_dict(), "synth_version": synth_version})
        progress.update("train", done / cfg.steps, f"step {done}/{cfg.steps} loss {float(loss.detach()):.3f}")
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds and done < cfg.steps:
            _save(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": done,
                         "config": cfg.to_dict(), "synth_version": synth_version})
            break
    log.close()
    return model.eval()


def _synth_version(cfg: TrainConfig) -> str:
    """The data engine version of a run (synth-2 for head subjects, the phantom engine otherwise)."""
    if cfg.label_dir:
        from multimodalgen.synthesis.subjects import SYNTH2_VERSION

        return SYNTH2_VERSION
    return SYNTH_VERSION


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=None, help="stop (with a checkpoint) after this many "
                        "seconds; run again to resume")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        cfg = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    except (OSError, ValueError, TypeError) as exc:          # json.JSONDecodeError is a ValueError
        parser.error(f"cannot use training config {args.config}: {exc} (fix the file; keys are TrainConfig's fields)")
    train(cfg, args.out, args.device, Progress("none"), max_seconds=args.max_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
