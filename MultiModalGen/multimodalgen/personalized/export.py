"""Export a finished training run as a shipped personalized model (fp16) with a MODEL_CARD.md.

    python -m multimodalgen.personalized.export --run DIR --out MultiModalGen/Resources/Models/personalized-v2
        [--name personalized-v2] [--working-spacing 4] [--metrics results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from multimodalgen.models.registry import version_from_name
from multimodalgen.personalized.train import TrainConfig, build_model
from multimodalgen.personalized.weights import save_model


def export_run(run: Path, out: Path, metrics: dict | None = None, name: str | None = None,
               working_spacing: float = 0.0) -> Path:
    """Write `out/config.json`, `out/model.safetensors` (fp16) and `out/MODEL_CARD.md` from `run/last.pt`."""
    from multimodalgen.personalized.synthetic import SYNTH_VERSION

    name = name or out.name

    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(state["config"])
    if cfg.kind != "xh":
        raise ValueError("only X_h runs (kind 'xh') can be exported as personalized models")
    model = build_model(TrainConfig.from_dict({**state["config"], "init_encoder": None}))
    model.load_state_dict(state["model"])
    if working_spacing:
        model.config = dataclasses.replace(model.config, working_spacing=float(working_spacing))
    training = {"steps": int(state["step"]), "train_config": cfg.to_dict(), "synth_version": SYNTH_VERSION,
                "command": f"python -m multimodalgen.personalized.train --config {run / 'config.json'} --out {run}"}
    version = str(version_from_name(name) or 1)
    ref = save_model(out, model.eval(), name=name, version=version, training=training,
                     description="personalized X_h segmentation (background/CSF/GM/WM) from any subset of T1/T2/PD")
    n_params = sum(p.numel() for p in model.parameters())
    size = (out / "model.safetensors").stat().st_size
    lines = [f"# {name}", "",
             "Personalized multimodal segmentation model: shared foundation-encoder architecture with modality "
             "embeddings, X_h = masked mean over the modalities present + a learnable population prior, modality "
             "decoders g_m and a segmentation head (background, CSF, GM, WM). Trained only on synthetic "
             "same-subject multi-contrast data (no real images).", "",
             "## Training", "",
             f"- command: `{training['command']}`",
             f"- steps: {training['steps']} (batch {cfg.batch_size}, {cfg.shape[0]}^3 volumes, AdamW lr {cfg.lr}, "
             f"cosine), modality dropout p_keep {cfg.p_keep}",
             f"- losses: seg {cfg.w_seg}, reconstruction {cfg.w_rec}, invariance {cfg.w_inv}, prior {cfg.w_prior}; "
             f"MR-Pretrain {cfg.mr_pretrain}, GM-Coord {cfg.gm_coord}",
             f"- encoder initialised from: {cfg.init_encoder or 'random'}; encoder normalisation: "
             f"{cfg.model.encoder_norm} statistics; working spacing {model.config.working_spacing} mm "
             "(images are resampled to it and the probabilities back; 0 = the images' own grid)",
             f"- data engine: {SYNTH_VERSION} (multimodalgen.personalized.synthetic; fixed spin-echo g_m per "
             "modality)", "",
             "## Files", "",
             f"- model.safetensors: fp16, {size / 1e6:.2f} MB, {n_params} parameters, sha256 `{ref.sha256}`",
             "- config.json: architecture (PersonalizedConfig) and training record", ""]
    if metrics:
        lines += ["## Metrics (benchmarks/personalized/run.py)", "", "```", json.dumps(metrics, indent=1), "```", ""]
    lines += ["## Limits", "",
              "Short CPU training budget; synthetic-only pretraining. Use an adapter (`multimodalgen finetune`) for "
              "real data. Not for clinical use.", ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--name", default=None, help="model name (default: the --out folder's name)")
    p.add_argument("--metrics", default=None, help="JSON file with benchmark metrics to put in the card")
    p.add_argument("--working-spacing", type=float, default=0.0,
                   help="mm the model runs at (PersonalizedConfig.working_spacing; 0 = the images' grid)")
    a = p.parse_args(argv)
    metrics = json.loads(Path(a.metrics).read_text()) if a.metrics else None
    export_run(Path(a.run), Path(a.out), metrics, a.name, a.working_spacing)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
