"""Adapter fine-tuning of a personalized model on a site's labelled cases (CASES.csv).

The base model is frozen (BatchNorm statistics included); MoR adapters (or one-rank LoRA) are injected into the
encoder's convolutions, and the segmentation head is trained fully (a new head when the label set differs from the
base model's). Method "full" fine-tunes every weight instead (for comparison; saved as an adapter-format file too).

Steps: optional TD-Calib (label-free reconstruction + invariance + masked reconstruction on every case's images,
adapters only), then supervised steps on random crops with random modality dropout; validation Dice on held-out
cases every `val_every` steps with early stopping (`patience` validations without improvement); with a single case
there is no split and the last weights are kept. `OUT/checkpoint.pt` makes an interrupted run resumable (removed
when the adapter is written). Output: `OUT/adapter.safetensors` + `OUT/adapter_config.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from multimodalgen.adapters.config import AdapterConfig
from multimodalgen.adapters.inject import adapter_parameters, adapter_state_dict, inject_adapters
from multimodalgen.adapters.io import AdapterMeta, save_adapter
from multimodalgen.errors import UserInputError
from multimodalgen.personalized.cases import LoadedCase, load_case, read_cases
from multimodalgen.personalized.evaluate import dice_per_class
from multimodalgen.personalized.losses import (invariance_loss, masked_reconstruction_loss, random_patch_mask,
                                               reconstruction_loss, segmentation_loss)
from multimodalgen.personalized.model import PersonalizedNet, _head
from multimodalgen.personalized.prepare import pad_to_multiple, to_working_grid
from multimodalgen.personalized.sliding import predict_logits
from multimodalgen.personalized.train import sample_present
from multimodalgen.progress import Progress
from multimodalgen.terminology import canonical_name

METHODS = ("mor", "lora", "full")
ENCODER_TARGETS = ("encoder.*",)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings (recorded in adapter_config.json under "training")."""

    method: str = "mor"
    ranks: tuple[int, ...] = (2, 4, 8)
    lora_rank: int = 4
    conv_kernel: str = "pointwise"
    steps: int = 150
    crop: int = 48
    lr: float = 3e-3
    p_keep: float = 0.6
    w_rec: float = 0.2
    w_inv: float = 0.05
    calib_steps: int = 0               # TD-Calib steps before supervised tuning (0 = off)
    val_fraction: float = 0.2
    val_every: int = 25
    patience: int = 4
    seed: int = 0
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserInputError("unknown fine-tuning method", expected=" | ".join(METHODS), got=self.method)
        if self.steps < 1 or self.crop < 16 or self.crop % 16:
            raise UserInputError("invalid fine-tuning settings", expected="steps >= 1 and crop a multiple of 16",
                                 got=f"steps {self.steps}, crop {self.crop}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserInputError("invalid validation fraction", expected="0 <= fraction < 1",
                                 got=str(self.val_fraction))

    def adapter_config(self) -> AdapterConfig:
        if self.method == "lora":
            return AdapterConfig.lora(self.lora_rank, target_modules=ENCODER_TARGETS, conv_kernel=self.conv_kernel)
        return AdapterConfig(ranks=tuple(self.ranks), target_modules=ENCODER_TARGETS, conv_kernel=self.conv_kernel)


def prepare_model(base: PersonalizedNet, labels: tuple[str, ...], cfg: FinetuneConfig
                  ) -> tuple[PersonalizedNet, list[nn.Parameter]]:
    """A copy of `base` ready to fine-tune and its trainable parameters."""
    model = copy.deepcopy(base)
    if tuple(labels) != tuple(base.config.labels):
        model.config = dataclasses.replace(base.config, labels=tuple(labels))
        model.seg_head = _head(base.config.encoder.out_channels, base.config.head_width, len(labels))
        _init_head_by_name(model.seg_head, base.seg_head, tuple(labels), tuple(base.config.labels))
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model, list(model.parameters())
    inject_adapters(model, cfg.adapter_config())
    # same label set: only the head's final 1x1x1 classifier is tuned next to the adapters (keeps the trainable
    # part under 2 % of the model); a new label set needs the whole new head
    head = model.seg_head if tuple(labels) != tuple(base.config.labels) else model.seg_head[-1]
    for p in head.parameters():
        p.requires_grad_(True)
    return model, adapter_parameters(model) + list(head.parameters())


@torch.no_grad()
def _init_head_by_name(head: nn.Sequential, base_head: nn.Sequential, labels: tuple[str, ...],
                       base_labels: tuple[str, ...]) -> None:
    """Start a new label set's head from the base model's: hidden layer copied, and each output class whose name the
    base model knows (legacy GM/WM/CSF spellings matched to the tissue names; background always) copies the base
    class's row, so an adapter for a subset of the base's classes starts where the base model is."""
    head[0].load_state_dict(base_head[0].state_dict())
    base_index = {canonical_name(n): i for i, n in enumerate(base_labels)}
    base_index["background"] = 0
    for i, name in enumerate(labels):
        j = base_index.get("background" if i == 0 else canonical_name(name))
        if j is not None:
            head[-1].weight[i].copy_(base_head[-1].weight[j])
            head[-1].bias[i].copy_(base_head[-1].bias[j])


def trainable_state(model: PersonalizedNet, cfg: FinetuneConfig) -> dict[str, torch.Tensor]:
    """What an adapter file stores: adapters + head, or everything for method "full"."""
    if cfg.method == "full":
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return adapter_state_dict(model, extra_prefixes=("seg_head",))


def _crop(case: LoadedCase, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random crop (biased to contain foreground) `(1, M, s, s, s)` and labels `(1, s, s, s)`, zero-padded."""
    x = torch.from_numpy(case.array)
    y = torch.from_numpy(case.labels)
    shape = case.labels.shape
    fg = np.argwhere(case.labels > 0)
    centre = fg[rng.integers(len(fg))] if (len(fg) and rng.random() < 0.8) else \
        np.array([rng.integers(s) for s in shape])
    start = [int(np.clip(c - size // 2, 0, max(0, s - size))) for c, s in zip(centre, shape)]
    sl = tuple(slice(a, a + size) for a in start)
    xc, yc = x[(slice(None),) + sl], y[sl]
    pad = [(size - n) for n in yc.shape]
    xc = torch.nn.functional.pad(xc, (0, pad[2], 0, pad[1], 0, pad[0]))
    yc = torch.nn.functional.pad(yc, (0, pad[2], 0, pad[1], 0, pad[0]))
    return xc[None], yc[None]


@torch.no_grad()
def validate(model: PersonalizedNet, cases: list[LoadedCase], device: torch.device) -> float:
    """Mean foreground Dice over `cases` with all their modalities (whole volumes)."""
    model.eval()
    scores = []
    for case in cases:
        x, size = pad_to_multiple(torch.from_numpy(case.array)[None], model.config.encoder.divisor)
        present = torch.from_numpy(case.present)[None]
        pred = predict_logits(model, x.to(device), present.to(device)).argmax(1)[0].cpu()
        pred = pred[: size[0], : size[1], : size[2]]
        scores.append(np.nanmean(dice_per_class(pred, torch.from_numpy(case.labels), model.config.n_classes)))
    return float(np.mean(scores))


def _label_free_loss(model, x, present, gen) -> torch.Tensor:
    z = model.encode(x, present)
    xh = model.fuse(z, present)
    loss = reconstruction_loss(model.reconstruct(xh), x, present)
    if int(present.sum()) > 1:
        loss = loss + 0.1 * invariance_loss(z, present)
    mask = random_patch_mask(tuple(x.shape), 0.75, 4, gen, x.device)
    recon = model.reconstruct(model.fuse(model.encode(x.masked_fill(mask, 0.0), present), present))
    return loss + masked_reconstruction_loss(recon, x, mask, present)


def to_working_case(case: LoadedCase, working_spacing: float) -> LoadedCase:
    """The case resampled to the model's working spacing (images linear, labels nearest); unchanged when the
    model runs on the native grid or the case's spacing is unknown."""
    if working_spacing <= 0 or case.spacing is None:
        return case
    x = to_working_grid(torch.from_numpy(case.array)[None], case.spacing, working_spacing)[0]
    y = to_working_grid(torch.from_numpy(case.labels)[None], case.spacing, working_spacing, labels=True)[0]
    return LoadedCase(case.name, x.numpy().astype(np.float32), case.present, y.numpy().astype(np.int64),
                      (working_spacing,) * 3)


def finetune_cases(base: PersonalizedNet, cases: list[LoadedCase], labels: tuple[str, ...], cfg: FinetuneConfig,
                   device: torch.device | str = "cpu", progress: Progress | None = None,
                   checkpoint: Path | None = None) -> tuple[PersonalizedNet, dict[str, Any]]:
    """Fine-tune on loaded cases; returns `(model with the best weights, training record)`."""
    progress = progress or Progress.null()
    device = torch.device(device)
    cases = [to_working_case(c, base.config.working_spacing) for c in cases]
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(cases))
    n_val = int(round(cfg.val_fraction * len(cases))) if len(cases) >= 2 else 0
    n_val = min(max(n_val, 1 if cfg.val_fraction > 0 and len(cases) >= 2 else 0), len(cases) - 1)
    val = [cases[i] for i in order[:n_val]]
    train = [cases[i] for i in order[n_val:]]
    model, params = prepare_model(base, labels, cfg)
    model.to(device)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    total = cfg.calib_steps + cfg.steps
    start, best, best_state, bad, history = 0, -1.0, None, 0, []
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best, bad, history = int(state["step"]), float(state["best"]), int(state["bad"]), state["history"]
        best_state = state.get("best_state")
    t0 = time.perf_counter()
    step = start
    for step in range(start, total):
        model.eval()  # frozen BatchNorm statistics (a batch of one crop cannot estimate them)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + step)
        case = train[int(torch.randint(len(train), (1,), generator=gen))]
        crop_rng = np.random.default_rng([cfg.seed, step])
        x, y = _crop(case, cfg.crop, crop_rng)
        x, y = x.to(device), y.to(device)
        avail = torch.from_numpy(case.present)[None].to(device)
        present = sample_present(gen, 1, avail.shape[1], "random", cfg.p_keep).to(device) & avail
        if not bool(present.any()):
            present = avail
        if step < cfg.calib_steps:
            loss = _label_free_loss(model, x, avail, gen)
        else:
            z = model.encode(x, present)
            xh = model.fuse(z, present)
            loss = segmentation_loss(model.segment_logits(xh), y)
            if cfg.w_rec > 0:
                loss = loss + cfg.w_rec * reconstruction_loss(model.reconstruct(xh), x, avail)
            if cfg.w_inv > 0 and int(present.sum()) > 1:
                loss = loss + cfg.w_inv * invariance_loss(z, present)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        stage = "td-calib" if done <= cfg.calib_steps else "finetune"
        progress.update(stage, done / total, f"step {done}/{total} loss {float(loss.detach()):.3f}")
        stop = False
        if val and done > cfg.calib_steps and ((done - cfg.calib_steps) % cfg.val_every == 0 or done == total):
            score = validate(model, val, device)
            history.append({"step": done, "val_dice": round(score, 4)})
            if score > best:
                best, bad = score, 0
                best_state = {k: v.detach().cpu().clone() for k, v in trainable_state(model, cfg).items()}
            else:
                bad += 1
                stop = bad >= cfg.patience
        if checkpoint is not None and (done % cfg.checkpoint_every == 0 or stop or done == total):
            from multimodalgen.io.writers import atomic_path

            with atomic_path(checkpoint) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": done, "best": best,
                            "bad": bad, "history": history, "best_state": best_state}, tmp)
        if stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    record = {"steps_done": step + 1 - cfg.calib_steps if total else 0, "calib_steps": cfg.calib_steps,
              "seconds": round(time.perf_counter() - t0, 1), "n_train": len(train), "n_val": len(val),
              "best_val_dice": round(best, 4) if val else None, "history": history,
              "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}}
    return model.eval(), record


def names_from_label_file(path: Path) -> tuple[str, ...] | None:
    """Label names `("background", name_1, ...)` from a label file that carries segment names (a `.seg.nrrd`),
    in label-value order; None for plain label maps."""
    from multimodalgen.io import read_label

    segments = read_label(str(path)).metadata.get("segments") or []
    if not segments:
        return None
    by_value = {int(s["label"]): str(s["name"]) for s in segments}
    if sorted(by_value) != list(range(1, len(by_value) + 1)):
        return None
    return ("background",) + tuple(by_value[v] for v in range(1, len(by_value) + 1))


def finetune(cases_csv: str | Path, out: str | Path, cfg: FinetuneConfig | None = None, base_model: str | None = None,
             labels: tuple[str, ...] | None = None, device: torch.device | str = "cpu",
             progress: Progress | None = None, resample: bool = False, name: str | None = None) -> Path:
    """Fine-tune an adapter from CASES.csv and write it to folder `out`; returns the folder."""
    from multimodalgen.personalized.weights import load_model

    cfg = cfg or FinetuneConfig()
    progress = progress or Progress.null()
    base, ref = load_model(base_model, device)
    rows = read_cases(cases_csv, base.config.modalities)
    labels = tuple(labels) if labels else (names_from_label_file(rows[0].label) or base.config.labels)
    progress.update("load", 0.0, f"{len(rows)} cases")
    cases = [load_case(r, base.config.modalities, len(labels), resample, base.config.ct_window) for r in rows]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, record = finetune_cases(base, cases, labels, cfg, device, progress, checkpoint=out / "checkpoint.pt")
    modalities = [m for m in base.config.modalities if any(c.present[base.config.modalities.index(m)]
                                                           for c in cases)]
    adapter_cfg = cfg.adapter_config() if cfg.method != "full" else AdapterConfig(target_modules=("*",))
    meta = AdapterMeta(name=name or out.name, adapter=adapter_cfg, base_model=ref, labels=dict(enumerate(labels)),
                       modalities=modalities, description=f"{cfg.method} adapter fine-tuned on {len(cases)} cases",
                       training={**record, "method": cfg.method, "cases_csv": str(cases_csv)})
    save_adapter(out, trainable_state(model, cfg), meta, dtype=torch.float16)
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return out
