"""Shipped encoder weights: export from a training checkpoint (fp16), sha256-checked loading, model card.

A shipped encoder folder (`MultiModalGen/Resources/Models/encoder-v2/`) holds:
    model.safetensors fp16 state dict of `UNet3D` (the one model-artifact format, `multimodalgen.models.artifact`)
    config.json       kind "encoder", format, weights, sha256 (verified on load), name, version, network config,
                      engine version, training step
    pretrain_config.json  the exact training config (input of `multimodalgen pretrain --config`)
    pretrain_stage<N>.json  for weights trained in continued stages: each stage's config, in order
    MODEL_CARD.md     architecture, training command, steps, device, data, metrics, sha256

    python -m multimodalgen.encoder.weights export --checkpoint CKPT --out-dir DIR [--metrics results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from multimodalgen.encoder.network import UNet3D, UNetConfig, count_parameters
from multimodalgen.io.checksum import sha256_file
from multimodalgen.models.registry import DEFAULT_MODELS, version_from_name

DEFAULT_ENCODER = DEFAULT_MODELS["encoder"]


def encoder_dir(name: str | None = None) -> Path:
    """Folder of the shipped encoder `name` (default `DEFAULT_ENCODER`), or `name` itself when it is a folder."""
    from multimodalgen.errors import UserInputError
    from multimodalgen.models.registry import shipped_models_dir

    if name and Path(name).is_dir():
        return Path(name)
    folder = shipped_models_dir() / (name or DEFAULT_ENCODER)
    if not (folder / "config.json").is_file():
        raise UserInputError(f"encoder {name or DEFAULT_ENCODER!r} not found",
                             expected=f"a folder with config.json under {shipped_models_dir()}", got=str(folder),
                             fix="run `multimodalgen models list`, or pass the encoder folder's path")
    return folder


def load_encoder(name: str | None = None, device: torch.device | str = "cpu") -> UNet3D:
    """The shipped encoder in eval mode, float32, on `device` (sha256 of the weights file checked first).

    Raises `UserInputError` when the folder is missing or the weights do not match their recorded sha256.
    """
    from multimodalgen.models.artifact import read_artifact

    config, state = read_artifact(encoder_dir(name), "encoder")
    model = UNet3D(UNetConfig.from_dict(config["network"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval()


def export_weights(checkpoint: str | Path, out_dir: str | Path, name: str = DEFAULT_ENCODER,
                   metrics: dict[str, Any] | None = None, device_trained: str = "cpu",
                   command: str | None = None, stages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write fp16 weights, config.json and MODEL_CARD.md for a training checkpoint. Returns the config dict.

    `stages` (optional) describes a run continued over several trainings, oldest first, the last one being
    `checkpoint`: each `{"checkpoint": path, "device": "what trained it"}`. Each stage's config, step and engine
    version are read from its checkpoint and its config is written as `pretrain_stage<N>.json` with `init_from`
    rewritten to `stage<N-1>/last.pt`, so `multimodalgen pretrain --config pretrain_stage<N>.json --out stage<N>`
    in order replays the whole lineage (see `stage_records`).
    """
    from multimodalgen.encoder.train import PretrainConfig

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg = PretrainConfig.from_dict(state["config"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, stage_cfgs = stage_records(stages, out) if stages else (None, None)
    if records:
        cfg = stage_cfgs[-1]
        device_trained = "; ".join(f"stage {i + 1}: {r['device']}" for i, r in enumerate(records))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state["model"].items()}
    model = UNet3D(cfg.network)
    info = {
        "name": name, "kind": "encoder", "version": f"{version_from_name(name) or 1}.0", "format": 1,
        "description": "contrast-invariant 3D UNet, 16 feature channels, pretrained on synthetic data only",
        "dtype": "float16",
        "network": cfg.network.to_dict(), "parameters": count_parameters(model),
        "engine_version": state.get("engine_version"),
        "step": sum(r["steps_reached"] for r in records) if records else int(state["step"]),
        "steps_planned": sum(r["steps_planned"] for r in records) if records else cfg.steps,
        "device_trained": device_trained,
        "input": "one channel, intensities normalised with multimodalgen.intensity.normalize to [0, 1]",
        "output": "(16, I, J, K) float32 features on the input grid",
    }
    if records:
        info["training_stages"] = records
    sources = _label_sources(cfg)
    if sources:
        info["training_label_maps"] = sources
        cfg = dataclasses.replace(cfg, label_dir="labels")      # a machine path: replay with a prepared folder
    if command:
        info["command"] = command
    if metrics is not None:
        info["metrics"] = metrics
    from multimodalgen.models.artifact import write_artifact

    info = write_artifact(out, info, half)
    (out / "pretrain_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n") \
        if not (out / "pretrain_config.json").exists() else None
    (out / "MODEL_CARD.md").write_text(model_card(info, cfg.to_dict(), command))
    return info


def _label_sources(cfg: Any) -> dict[str, Any]:
    """`{file: {"source", "licence", ...}}` of the synth-2 label folder a run drew heads from (empty without)."""
    if not cfg.label_dir or cfg.p_head <= 0:
        return {}
    record = Path(cfg.label_dir) / "sources.json"
    if not record.is_file():
        raise FileNotFoundError(f"{record} not found: export needs the label folder the run trained on to record "
                                "the label maps' licences in the model card")
    return {name: {k: v for k, v in rec.items() if k in ("source", "licence", "kind")}
            for name, rec in json.loads(record.read_text())["files"].items()}


def stage_records(stages: list[dict[str, Any]], out: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    """Write `pretrain_stage<N>.json` for each stage (see `export_weights`) and return one record per stage
    (config file, steps reached / planned, engine version, device, what it was initialised from) and the
    written `PretrainConfig` of each stage."""
    from multimodalgen.encoder.train import PretrainConfig

    records, configs = [], []
    for i, stage in enumerate(stages, start=1):
        state = torch.load(stage["checkpoint"], map_location="cpu", weights_only=True)
        cfg = PretrainConfig.from_dict(state["config"])
        if i > 1 and not cfg.init_from:
            raise ValueError(f"stage {i} ({stage['checkpoint']}) has no init_from: it does not continue stage {i - 1}")
        cfg = dataclasses.replace(cfg, init_from=f"stage{i - 1}/last.pt" if i > 1 else "")
        config_file = f"pretrain_stage{i}.json"
        (out / config_file).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        configs.append(cfg)
        records.append({"stage": i, "config_file": config_file, "steps_reached": int(state["step"]),
                        "steps_planned": cfg.steps, "engine_version": state.get("engine_version"),
                        "device": str(stage.get("device", "unknown")), "init_from": cfg.init_from or "scratch",
                        "note": str(stage.get("note", ""))})
    return records, configs


def update_metrics(folder: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Replace the benchmark metrics of an exported encoder (config.json + MODEL_CARD.md); weights untouched."""
    folder = Path(folder)
    info = json.loads((folder / "config.json").read_text())
    if sha256_file(folder / info["weights"]) != info["sha256"]:
        raise ValueError(f"{folder}: weights do not match config.json sha256; re-export instead")
    info["metrics"] = metrics
    train_cfg = json.loads((folder / "pretrain_config.json").read_text())
    (folder / "config.json").write_text(json.dumps(info, indent=2) + "\n")
    (folder / "MODEL_CARD.md").write_text(model_card(info, train_cfg))
    return info


def _status(metrics: dict[str, Any]) -> str:
    """Plain statement of the acceptance targets met or missed by these metrics."""
    probe = metrics.get("probe_cross_mean")
    if probe is None:
        return ""
    verdict = "met" if probe >= 0.80 else "NOT met"
    text = (f"**Status.** Mean cross-contrast probe balanced accuracy (T2, PD; both template sets) = {probe:.3f}: "
            f"the >= 0.80 target is {verdict}.")
    held = metrics.get("probe_heldout_min")
    if held is not None:
        text += (f" Worst held-out contrast {held:.3f} (target >= 0.65 and >= raw intensity + 0.15 on each: "
                 f"{'met' if _heldout_met(metrics) else 'NOT met'}).")
    return text + (" Timings come from the shared 2-core development machine, so they can overstate the cost on an "
                   "idle machine.\n")


def _heldout_met(metrics: dict[str, Any]) -> bool:
    """Every held-out probe column of the trained row >= .65 and >= the raw-intensity row + .15."""
    rows = {r["method"]: r for r in metrics.get("rows", [])}
    trained, raw = rows.get(metrics.get("trained_row")), rows.get("raw intensity")
    cols = [c for c in metrics.get("columns", []) if c.endswith("_heldout")]
    if trained is None or raw is None or not cols:
        return False
    return all(trained[c] >= 0.65 and trained[c] >= raw[c] + 0.15 for c in cols)


_DEFAULT_USE = ("Registration (`features=\"mind+encoder\"`) and few-shot segmentation (`encoder=\"on\"`) can add "
                "its features; both keep them off by default because their benchmarks did not improve "
                "(`benchmarks/registration/README.md`, `benchmarks/fewshot/RESULTS.md`).")


def _data_sources(info: dict[str, Any], train_cfg: dict[str, Any]) -> str:
    """Which data the weights were trained on, with licences (synth-2 label maps are listed by file)."""
    synthetic = ("random label ensembles (procedural smooth shapes) rendered with random MR-, CT- and PET-like "
                 "appearance by `multimodalgen.synthesis`")
    sources = info.get("training_label_maps")
    if not sources:
        return (f"Synthetic only: {synthetic}. No real image or label map was used for training, so no third-party "
                "data licence applies to the weights. Real data (SPM templates, GPL-2) is used only to evaluate.")
    listed = "\n".join(f"- `{name}`: {rec.get('source', '?')}, licence {rec.get('licence', '?')}"
                        for name, rec in sorted(sources.items()))
    return (f"{train_cfg.get('p_head', 0):.0%} of the samples of the last stage are synth-2 heads: one real label map "
            "per subject (hard labels sampled from the tissue probabilities, individualised by deformation, cortical "
            "thickness, ventricle and sulcal CSF changes; `multimodalgen.synthesis.subjects`) rendered as two "
            f"modalities of the same anatomy; the rest are {synthetic}. Label maps (a folder made by "
            "`python -m multimodalgen.synthesis.prepare_labels --data ../shared/data --out labels`; never shipped):\n"
            f"{listed}\n\nNo real image was used for training. Colin27/AAL, Neuromorphometrics, HarvardOxford and JHU "
            "are never used for training; SPM templates and Colin27 are used only to evaluate.")


def _metrics_table(metrics: dict[str, Any] | None) -> str:
    if not metrics or "rows" not in metrics:
        return "(no benchmark run recorded)\n"
    cols = metrics.get("columns", [])
    lines = ["| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for row in metrics["rows"]:
        vals = [row.get(c) for c in cols]
        lines.append(f"| {row['method']} | " + " | ".join("" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def model_card(info: dict[str, Any], train_cfg: dict[str, Any], command: str | None = None) -> str:
    """Markdown model card text from the exported config and the training config."""
    net = info["network"]
    metrics = info.get("metrics") or {}
    extra = "\n".join(f"- {k}: {v}" for k, v in metrics.get("timings", {}).items())
    return f"""# {info['name']}: contrast-invariant foundation encoder

**What it is.** A 3D UNet that maps one normalised intensity volume `(I, J, K)` to 16 voxel feature channels
`(16, I, J, K)` on the same grid, trained so that the features depend on anatomy (which structure a voxel belongs
to) and not on contrast (MR T1/T2/PD, CT, PET-like). Method after anatomix (Dey et al., ICLR 2025), trained by
this project on synthetic images only; no third-party weights.

## Architecture
- `multimodalgen.encoder.network.UNet3D`, widths {net['widths']} (full resolution -> 1/16), {info['parameters']:,}
  parameters, BatchNorm + ReLU, max-pool down, nearest up with skip concatenation, padding `{net['padding_mode']}`,
  1x1x1 output conv to {net['out_channels']} channels. Input sizes are padded to multiples of 16 by the inference code.
- Full-resolution path kept thin (one 3x3x3 conv of {net['widths'][0]} channels down, {net.get('head_width') or net['widths'][0]} up) for CPU speed.{_side_column_text(net)}
- Weights: `{info['weights']}` ({info['format']}), {info['dtype']}, sha256 `{info['sha256']}`.
  Loaded by `multimodalgen.encoder.weights.load_encoder` (sha256 verified on every load).

## Training
{_training_section(info, train_cfg, command)}
- Loss: voxel-level supervised contrastive (SupCon) across two views of each label map, same label = positive,
  on 4 decoder levels (1/8, 1/4, 1/2 resolution and the 16-channel output), per-level projection heads (training
  only, not shipped), plus a voxel-identity InfoNCE term (weight {train_cfg.get('identity_weight', 0)}, same position in the
  other view = positive, other and nearby positions = negatives) on the two finest levels.{_role_text(train_cfg)}

## Data sources and licences
{_data_sources(info, train_cfg)}

## Metrics (benchmarks/encoder/run_benchmark.py on spm_templates; higher is better)
{_metrics_table(metrics)}
{extra}

(a) cross-contrast voxel matching: fraction of sampled voxels in contrast A whose nearest feature in contrast B
(within a search window) lies within 2 voxels of the true location. (b) linear probe: logistic regression for
GM/WM/CSF trained on T1 features, balanced accuracy on T2 / PD features; `*_heldout` columns apply the avg152 T1
probe to contrasts the engine never renders (amyloid-PET-, DWI- and BOLD-EPI-like, `benchmarks/encoder/heldout_contrasts.py`).

{_status(metrics)}{_channel_groups_text(train_cfg, metrics)}
## Intended use and limits
Feature extractor for cross-contrast voxel correspondence (`multimodalgen features`). {info.get('engine_use') or _DEFAULT_USE}
Trained for {info['step']:,} steps{_continued(info, train_cfg)} ({info['device_trained']}): far fewer than the paper's encoder
(600K GPU steps at 128^3). Inputs should be normalised with `multimodalgen.intensity.normalize`.
"""


def _continued(info: dict[str, Any], train_cfg: dict[str, Any]) -> str:
    """' in all', or, for a single-stage export that continued a shipped encoder, where the earlier steps are."""
    start = train_cfg.get("init_from") or ""
    if info.get("training_stages") or not start or start.endswith(".pt"):
        return " in all"
    return f" in this stage, continuing `{start}` (its model card lists the steps before these)"


def _training_section(info: dict[str, Any], train_cfg: dict[str, Any], command: str | None) -> str:
    """The model card's training commands, config summary, steps and device (one stage or a staged lineage)."""
    stages = info.get("training_stages")
    summary = (f"engine {train_cfg['engine']['shape']} voxels, {train_cfg['engine']['n_views']} views, batch "
               f"{train_cfg['batch_size']} label map(s) per step, {train_cfg['n_voxels']} balanced voxels per level, "
               f"temperature {train_cfg['temperature']}, AdamW lr {train_cfg['lr']} with warm-up and cosine decay "
               f"planned over {train_cfg['steps']} steps")
    if not stages:
        command = command or (f"multimodalgen --device auto --threads 2 pretrain --config "
                              f"MultiModalGen/Resources/Models/{info['name']}/pretrain_config.json --out DIR")
        start = train_cfg.get("init_from") or "scratch"
        return f"""- Command (exactly reproducible; seeds are derived from the config's `seed` and the step):
  `{command}`
  (equivalently `python -m multimodalgen.encoder.train --config <same file> --out DIR --device auto --threads 2`;
  add `--resume` to continue a stopped run; data and voxel sampling depend only on seed and step, the thread count
  can change float rounding only). Initialised from: `{start}`.
- Config: `pretrain_config.json` in this folder ({summary}).
- Steps reached for these weights: **{info['step']}** (of {info['steps_planned']} planned).
- Data engine: `multimodalgen.synthesis` version `{info['engine_version']}`.
- Device that trained it: **{info['device_trained']}**."""
    folder = f"MultiModalGen/Resources/Models/{info['name']}"
    lines = [f"Trained in {len(stages)} stages, each continuing the previous one's last checkpoint (`init_from`). "
             "Replay them in order from one working folder (data and voxel sampling depend only on each config's "
             "`seed` and the step; GPU kernels and thread counts can change float rounding):", ""]
    for r in stages:
        lines.append(f"  `multimodalgen pretrain --config {folder}/{r['config_file']} --out stage{r['stage']}"
                     f" --max-steps {r['steps_reached']}`")
    lines += ["", "| stage | config | steps reached / planned | engine | initialised from | device | note |",
              "|---|---|---|---|---|---|---|"]
    for r in stages:
        lines.append(f"| {r['stage']} | `{r['config_file']}` | {r['steps_reached']} / {r['steps_planned']} | "
                     f"{r['engine_version']} | {r['init_from']} | {r['device']} | {r.get('note', '')} |")
    lines += ["", f"- Last stage's config (also `pretrain_config.json`): {summary}"
              f"{', bf16 autocast' if train_cfg.get('amp') else ''}.",
              f"- Steps in all: **{info['step']:,}**. Data engine of the last stage: `{info['engine_version']}`."]
    return "\n".join(lines)


def _role_text(train_cfg: dict[str, Any]) -> str:
    weight = train_cfg.get("role_weight", 0)
    if not weight:
        return ""
    text = (f"\n  Anatomical-role cross-entropy (weight {weight}): a linear 1x1x1 classifier (training only) on the output "
            f"separates the outer fluid / ribbon / core bands of layered brain-like phantoms "
            f"({train_cfg['engine']['labels'].get('p_layered', 0):.0%} of the phantom label maps)")
    if train_cfg.get("p_head", 0) > 0:
        text += " and CSF / grey matter / white matter of the synth-2 heads, in every rendered modality"
    n_out = train_cfg.get("network", {}).get("out_channels", 16)
    if train_cfg.get("role_channels"):
        text += f"; the classifier reads only output channels {n_out - train_cfg['role_channels']}-{n_out - 1}"
    return text + "." + _distill_text(train_cfg) + _frozen_text(train_cfg)


def _frozen_text(train_cfg: dict[str, Any]) -> str:
    """The card's sentence on outputs kept bit for bit from the initialising encoder ("" when off)."""
    n = train_cfg.get("frozen_channels", 0)
    if not n:
        return ""
    net = train_cfg.get("network", {})
    start = Path(str(train_cfg.get("init_from", ""))).name or "the initialising encoder"
    half = f" and the 1/2-resolution decoder block to {net['half_width']}" if net.get("half_width") else ""
    return (f"\n  Grown, not retrained: output channels 0-{n - 1} are `{start}`'s to float rounding (its trunk, the "
            "original channels of the widened blocks and those head rows are frozen; the original channels have zero "
            f"weight on the added ones). The last full-resolution conv was widened to {net.get('head_width')} "
            f"channels{half}, a side column; only the added channels and "
            f"output channels {n}-{net.get('out_channels', 16) - 1} trained, so the new objective does not compete with "
            "the old one for the same channels (the outputs are a linear map of that conv's channels).")


def _side_column_text(net: dict[str, Any]) -> str:
    """Architecture note for a grown network ("" for the plain UNet)."""
    if not (net.get("head_width") or net.get("half_width")):
        return ""
    return (f"\n- Side column: the 1/2-resolution decoder block has {net.get('half_width') or net['widths'][1]} "
            f"channels and the last full-resolution conv {net.get('head_width') or net['widths'][0]} "
            f"(the UNet's are {net['widths'][1]} and {net['widths'][0]}); see Training.")


def _channel_groups_text(train_cfg: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The card's channel-group section for a grown encoder: which outputs serve which use, with their scores."""
    n = train_cfg.get("frozen_channels", 0)
    if not n:
        return ""
    out = train_cfg.get("network", {}).get("out_channels", 16)
    groups = metrics.get("channel_groups", {})
    scores = "".join(f"\n- `{name}`: " + ", ".join(f"{k} {v:.3f}" for k, v in vals.items())
                     for name, vals in groups.items())
    return (f"\n**Channel groups.** Outputs 0-{n - 1} are for correspondence (voxel matching, registration): they "
            f"are the initialising encoder's. Outputs {n}-{out - 1} are for tissue: they were trained for "
            "contrast-invariant grey/white/CSF roles. The table above scores all 16 channels together; the "
            f"tissue channels lower matching there because they are piecewise constant. Scored apart:{scores}\n")


def _distill_text(train_cfg: dict[str, Any]) -> str:
    """The card's sentence on feature distillation from a frozen teacher ("" when off)."""
    weight = train_cfg.get("distill_weight", 0)
    if not weight:
        return ""
    n = train_cfg.get("distill_channels") or train_cfg.get("network", {}).get("out_channels", 16)
    teacher = Path(str(train_cfg.get("distill_from", ""))).name or "the teacher"
    return (f"\n  Feature distillation (weight {weight}): output channels 0-{n - 1} are held to those of the frozen "
            f"`{teacher}` (squared error per channel over the teacher's variance), so its cross-contrast voxel "
            "matching survives while the other channels learn tissue roles (the two objectives compete when they "
            "share channels).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export encoder weights from a training checkpoint.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    exp = sub.add_parser("export")
    exp.add_argument("--checkpoint", required=True)
    exp.add_argument("--out-dir", required=True)
    exp.add_argument("--name", default=DEFAULT_ENCODER)
    exp.add_argument("--metrics", default=None, help="benchmark results JSON to embed")
    exp.add_argument("--device-trained", default="cpu")
    upd = sub.add_parser("update-metrics", help="embed new benchmark results without touching the weights")
    upd.add_argument("--dir", required=True)
    upd.add_argument("--metrics", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "update-metrics":
        info = update_metrics(args.dir, json.loads(Path(args.metrics).read_text()))
        print(json.dumps({k: info[k] for k in ("name", "step", "sha256")}))
        return 0
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else None
    info = export_weights(args.checkpoint, args.out_dir, args.name, metrics, args.device_trained)
    print(json.dumps({k: info[k] for k in ("name", "step", "sha256")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
