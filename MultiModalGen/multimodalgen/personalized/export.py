"""Export a finished training run as a shipped personalized model (fp16) with a MODEL_CARD.md, or ship a model's
unchanged weights with new inference settings.

    python -m multimodalgen.personalized.export --run DIR --out MultiModalGen/Resources/Models/personalized-v2
        [--name personalized-v2] [--working-spacing 4] [--metrics results.json] [--history TEXT]
        [--refine-prior-power P] [--refine-init both|clusters|network] [--mirror-lr]
    python -m multimodalgen.personalized.export --from-model personalized-v9 --out .../personalized-v10 --csf-shell-mm 3
        [--refine-prior-power P] [--refine-init ...] [--mirror-lr] [--metrics results.json] [--history TEXT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from multimodalgen.models.registry import version_from_name
from multimodalgen.personalized.train import TrainConfig, build_model
from multimodalgen.personalized.weights import WEIGHTS as WEIGHTS_FILE
from multimodalgen.personalized.weights import save_model


def export_run(run: Path, out: Path, metrics: dict | None = None, name: str | None = None,
               working_spacing: float = 0.0, metrics_source: str = "benchmarks/personalized",
               history: str | None = None, refine_prior_power: float | None = None,
               refine_init: str | None = None, mirror_lr: bool | None = None,
               csf_shell_mm: float | None = None) -> Path:
    """Write `out/config.json`, `out/model.safetensors` (fp16), `out/pretrain_config.json` (the run's training
    config, replayable with `label_dir` pointed at a prepared label folder) and `out/MODEL_CARD.md` from
    `run/last.pt`. `history`: how a run that changed config on the way got there (stages, steps, configs), put
    in the card verbatim. `working_spacing` (> 0), `refine_prior_power`, `refine_init`, `mirror_lr` and `csf_shell_mm` (not
    None) override the run's inference settings (`PersonalizedConfig`), chosen after training on the dev benchmark."""
    from multimodalgen.personalized.synthetic import SYNTH_VERSION as PHANTOM_VERSION

    name = name or out.name
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(state["config"])
    if cfg.kind != "xh":
        raise ValueError("only X_h runs (kind 'xh') can be exported as personalized models")
    synth_version = str(state.get("synth_version", PHANTOM_VERSION))
    model = build_model(TrainConfig.from_dict({**state["config"], "init_encoder": None, "init_model": None}))
    model.load_state_dict(state["model"])
    if working_spacing:
        model.config = dataclasses.replace(model.config, working_spacing=float(working_spacing))
    if refine_prior_power is not None:
        model.config = dataclasses.replace(model.config, refine_prior_power=float(refine_prior_power))
    if refine_init is not None:
        model.config = dataclasses.replace(model.config, refine_init=str(refine_init))
    if mirror_lr is not None:
        model.config = dataclasses.replace(model.config, mirror_lr=bool(mirror_lr))
    if csf_shell_mm is not None:
        model.config = dataclasses.replace(model.config, csf_shell_mm=float(csf_shell_mm))
    command = ("python -m multimodalgen.personalized.train --config pretrain_config.json --out RUN"
               + (" (label_dir: a folder made by `python -m multimodalgen.synthesis.prepare_labels`)"
                  if cfg.label_dir else ""))
    training = {"steps": int(state["step"]), "train_config": {**cfg.to_dict(), "label_dir": "LABELS" if
                cfg.label_dir else None}, "synth_version": synth_version, "command": command}
    if cfg.label_dir:
        training["label_sources"] = _label_sources(Path(cfg.label_dir))
    out.mkdir(parents=True, exist_ok=True)
    (out / "pretrain_config.json").write_text(json.dumps(training["train_config"], indent=2) + "\n", encoding="utf-8")
    version = str(version_from_name(name) or 1)
    classes = ", ".join(model.config.labels[1:])
    ref = save_model(out, model.eval(), name=name, version=version, training=training, synth_version=synth_version,
                     description=f"personalized X_h segmentation ({classes}) from any subset of "
                                 f"{'/'.join(model.config.modalities)}")
    n_params = sum(p.numel() for p in model.parameters())
    size = (out / "model.safetensors").stat().st_size
    if cfg.label_dir:
        data = (f"{synth_version} head subjects (`multimodalgen.synthesis.subjects`): individual heads drawn from SPM's TPM "
                "(GPL-2) with random pose, elastic deformation, cortical folding, cortical thickness, ventricle size, "
                "sulcal CSF and skull thickness, rendered as T1/T2/PD/FLAIR (spin-echo / inversion-recovery physics), "
                "CT (HU) and PET-like images of the same subject, with random slice thickness 1-7 mm, smoothing, bias, "
                "noise, EPI distortion and cut fields of view" + (
                    f"; {cfg.p_template:.0%} template-like subjects (every modality smoothed 4-10 mm FWHM, classes "
                    "labelled at that resolution" + (
                        "; 60 % of them population templates, the average of 4-8 individual heads with classes by "
                        "majority" if _engine_at_least(synth_version, (2, 3)) else "") + (
                        f"; SPM's brain rule: at the brain's edge a voxel is grey, white or CSF only where that tissue "
                        f"holds >= {cfg.template_brain_share:.2f} of it" if cfg.template_brain_share else "") + (
                        f"; members' sulcal-CSF log-bias shifted by {cfg.template_sulcal_csf_shift:+.2f}"
                        if cfg.template_sulcal_csf_shift else "") + ")"
                    if cfg.p_template else "") + ". Label sources: " + ", ".join(
                    f"{k} ({v['licence']})" for k, v in training["label_sources"].items()) + ". No real image, and "
                "no non-commercial atlas, was used.")
    else:
        data = f"{synth_version} (multimodalgen.personalized.synthetic; fixed spin-echo g_m per modality)"
    lines = [f"# {name}", "",
             "Personalized multimodal segmentation model: shared foundation-encoder architecture with modality "
             "embeddings, X_h = masked mean over the modalities present + a learnable population prior, modality "
             f"decoders g_m and a segmentation head ({classes}; names, colours and SNOMED-CT codes in config.json "
             "`labels`). Trained only on synthetic data.", "",
             "## Training", "",
             f"- command: `{command}`",
             f"- steps: {training['steps']} (batch {cfg.batch_size}, {cfg.shape[0]}^3 volumes, AdamW lr {cfg.lr}, "
             f"cosine), modality dropout p_keep {cfg.p_keep}" + (f", at most {cfg.max_present} modalities per step"
                                                                 if cfg.max_present else "")
             + (f", one modality alone in {cfg.p_single:.0%} of steps" if cfg.p_single else ""),
             f"- losses: seg {cfg.w_seg}, reconstruction {cfg.w_rec}, invariance {cfg.w_inv}, prior {cfg.w_prior}; "
             f"MR-Pretrain {cfg.mr_pretrain}, GM-Coord {cfg.gm_coord}",
             f"- initialised from: {cfg.init_model or cfg.init_encoder or 'random'}; encoder normalisation: "
             f"{cfg.model.encoder_norm} statistics; working spacing {model.config.working_spacing} mm "
             "(images are resampled to it and the probabilities back)"
             + (f"; sliding windows of {model.config.patch_size}^3" if model.config.patch_size else "")
             + (f"; CT window {list(model.config.ct_window)} HU" if model.config.ct_window else "")
             + f"; intensity refinement prior power {model.config.refine_prior_power:g}, "
               f"{model.config.refine_init} start"
             + ("; logits averaged with the left-right mirrored input's" if model.config.mirror_lr else "")
             + (f"; skull within {model.config.csf_shell_mm:g} mm of grey/white matter given to CSF after the "
                "refinement" if model.config.csf_shell_mm else ""),
             f"- data engine: {data}"] + ([f"- history: {history}"] if history else []) + ["",
             "## Files", "",
             f"- model.safetensors: fp16, {size / 1e6:.2f} MB, {n_params} parameters, sha256 `{ref.sha256}`",
             "- config.json: architecture (PersonalizedConfig), label definitions and training record",
             "- pretrain_config.json: the training config (set `label_dir` to a prepared label folder to replay)", ""]
    _write_card(out, lines, metrics, metrics_source)
    return out


def reconfigure_model(source: str | Path, out: Path, settings: dict, metrics: dict | None = None,
                      name: str | None = None, history: str | None = None,
                      metrics_source: str = "benchmarks/personalized") -> Path:
    """Ship model `source` (a name or folder)'s weights unchanged (fp16; bit for bit from an fp16 source, as every
    shipped model is) under a new name with new inference settings `settings` (PersonalizedConfig fields, e.g.
    `{"refine_prior_power": 0.5, "mirror_lr": True}`):
    `out/config.json` keeps the source's training record and adds `derived_from` (name, sha256, settings);
    `out/pretrain_config.json` is the source's; `out/MODEL_CARD.md` is the source's training section under a header
    that says what changed, with `metrics`. Inference settings only: ValueError for an architecture field."""
    from multimodalgen.models.artifact import read_artifact
    from multimodalgen.personalized.weights import load_model, resolve_model_folder

    allowed = {"refine_prior_power", "refine_init", "mirror_lr", "csf_shell_mm", "working_spacing", "patch_size",
               "ct_window"}
    if not settings or set(settings) - allowed:
        raise ValueError(f"settings must be inference settings among {sorted(allowed)}, got {sorted(settings)}")
    folder = resolve_model_folder(source)
    source_config, _ = read_artifact(folder, "personalized")
    model, ref = load_model(folder)
    model.config = dataclasses.replace(model.config, **settings)
    name = name or out.name
    out.mkdir(parents=True, exist_ok=True)
    changed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
    training = {**source_config.get("provenance", {}),
                "derived_from": {"name": ref.name, "sha256": ref.sha256, "settings": changed}}
    training.pop("synth_version", None)
    new_ref = save_model(out, model.eval(), name=name, version=str(version_from_name(name) or 1),
                         description=source_config.get("description", ""), training=training,
                         synth_version=source_config.get("synth_version"))
    if (folder / "pretrain_config.json").is_file():
        (out / "pretrain_config.json").write_text((folder / "pretrain_config.json").read_text(encoding="utf-8"),
                                                  encoding="utf-8")
    source_card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8") if (folder / "MODEL_CARD.md").is_file() else ""
    body = source_card.split("## Training", 1)[1].split("## Files", 1)[0].strip() if "## Training" in source_card else ""
    listed = ", ".join(f"{k} {v}" for k, v in changed.items())
    size = (out / WEIGHTS_FILE).stat().st_size
    lines = [f"# {name}", "",
             f"{ref.name}'s weights unchanged (same tensors; source sha256 `{ref.sha256}`) with new inference settings: "
             f"{listed} (`PersonalizedConfig`; made with `python -m multimodalgen.personalized.export --from-model "
             f"{ref.name}`). {source_config.get('description', '')}.", ""]
    if history:
        lines += [f"History: {history}", ""]
    lines += [f"## Training (of {ref.name})", "", body, "", "## Files", "",
              f"- model.safetensors: fp16, {size / 1e6:.2f} MB, sha256 `{new_ref.sha256}`",
              "- config.json: architecture and inference settings (PersonalizedConfig), label definitions, training "
              "record and `derived_from`",
              f"- pretrain_config.json: {ref.name}'s training config (set `label_dir` to a prepared label folder to "
              "replay)", ""]
    _write_card(out, lines, metrics, metrics_source)
    return out


def _write_card(out: Path, lines: list[str], metrics: dict | None, metrics_source: str) -> None:
    """`out/MODEL_CARD.md`: `lines`, then the metrics (when given) and the limits every shipped model shares."""
    if metrics:
        lines = lines + [f"## Metrics ({metrics_source})", "", "```", json.dumps(metrics, indent=1), "```", ""]
    lines = lines + ["## Limits", "", "Short CPU training budget; synthetic-only training. Use an adapter "
                     "(`multimodalgen finetune`) for your site's data. Not for clinical use.", ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")


def _label_sources(folder: Path) -> dict:
    """`{file: {"licence", "source"}}` of the label maps a head-subject run draws from (the folder's tissue map),
    from its sources.json (empty when it has none)."""
    record = folder / "sources.json"
    if not record.is_file():
        return {}
    files = json.loads(record.read_text(encoding="utf-8")).get("files", {})
    return {k: {"licence": v.get("licence"), "source": v.get("source")} for k, v in files.items()
            if v.get("kind") == "tissue"}   # head subjects are drawn from the tissue map only


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="training run folder (with last.pt)")
    source.add_argument("--from-model", help="a shipped model name or folder: its weights unchanged, with the "
                        "inference settings given here")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default=None, help="model name (default: the --out folder's name)")
    p.add_argument("--metrics", default=None, help="JSON file with benchmark metrics to put in the card")
    p.add_argument("--working-spacing", type=float, default=0.0,
                   help="mm the model runs at (PersonalizedConfig.working_spacing; 0 = the images' grid)")
    p.add_argument("--history", default=None, help="text for the model card: how the run got there when its config "
                   "changed on the way (stages, steps, configs)")
    p.add_argument("--refine-prior-power", type=float, default=None, help="the model's intensity-refinement prior "
                   "power (PersonalizedConfig.refine_prior_power, 0..1; default: the run's, 0.3 unless set), chosen "
                   "with benchmarks/personalized/refine_select.py")
    p.add_argument("--refine-init", choices=("both", "clusters", "network"), default=None, help="where the "
                   "model's intensity refinement starts (PersonalizedConfig.refine_init; default: the run's, both)")
    p.add_argument("--mirror-lr", action="store_true", help="the model averages its logits with those of the "
                   "left-right mirrored input (PersonalizedConfig.mirror_lr; twice the network time)")
    p.add_argument("--csf-shell-mm", type=float, default=None, help="after the refinement, skull within this many "
                   "mm of grey/white matter is given to CSF (PersonalizedConfig.csf_shell_mm; 0 = off, the run's "
                   "default), chosen with benchmarks/personalized/refine_select.py")
    a = p.parse_args(argv)
    metrics = json.loads(Path(a.metrics).read_text()) if a.metrics else None
    if a.from_model:
        settings = {k: v for k, v in (("refine_prior_power", a.refine_prior_power), ("refine_init", a.refine_init),
                                      ("mirror_lr", True if a.mirror_lr else None),
                                      ("csf_shell_mm", a.csf_shell_mm),
                                      ("working_spacing", a.working_spacing or None)) if v is not None}
        if not settings:
            p.error("--from-model needs at least one inference setting (--refine-prior-power, --refine-init, "
                    "--mirror-lr, --csf-shell-mm, --working-spacing)")
        reconfigure_model(a.from_model, Path(a.out), settings, metrics, a.name, a.history)
        return 0
    export_run(Path(a.run), Path(a.out), metrics, a.name, a.working_spacing, history=a.history,
               refine_prior_power=a.refine_prior_power, refine_init=a.refine_init,
               mirror_lr=True if a.mirror_lr else None, csf_shell_mm=a.csf_shell_mm)
    return 0


def _engine_at_least(synth_version: str, minimum: tuple[int, ...]) -> bool:
    """Whether a data-engine version like "synth-2.3" is at least `minimum` (numeric, so 2.10 > 2.3)."""
    try:
        return tuple(int(v) for v in synth_version.split("-", 1)[1].split(".")) >= minimum
    except (IndexError, ValueError):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
