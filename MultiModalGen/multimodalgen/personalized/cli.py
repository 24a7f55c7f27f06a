"""Verbs `finetune --cases CASES.csv --out ADAPTER` and `segment --image T1=PATH ... --adapter A --out LABELS`."""

from __future__ import annotations

from pathlib import Path

from multimodalgen.errors import UserInputError
from multimodalgen.models.registry import DEFAULT_MODELS
from multimodalgen.personalized.atlas import DEFAULT_ATLAS_WEIGHT, MAX_ATLAS_WEIGHT


def add_parser(subparsers) -> None:
    ft = subparsers.add_parser("finetune", help="fine-tune a small adapter of the personalized model on your "
                               "labelled cases (CASES.csv: modality columns + label)")
    ft.add_argument("--cases", required=True, help="CSV with a header naming modalities (T1,T2,PD,...) and 'label'")
    ft.add_argument("--out", required=True, help="adapter folder to write (or a name: then it goes into the user "
                    "adapter folder)")
    ft.add_argument("--base-model", default=None, help="personalized model folder or name (default "
                    f"{DEFAULT_MODELS['personalized']})")
    ft.add_argument("--labels", default=None, help="comma-separated label names, value 0 first (default: the base "
                    "model's label set)")
    ft.add_argument("--method", choices=("mor", "lora", "full"), default="mor",
                    help="what is trained: mor (mixture of low-rank adapters), lora (one low-rank adapter), full "
                    "(every weight; largest file)")
    ft.add_argument("--steps", type=int, default=150, help="training steps at most (early stopping may end sooner)")
    ft.add_argument("--crop", type=int, default=48, help="training crop size in voxels (multiple of 16)")
    ft.add_argument("--lr", type=float, default=3e-3, help="learning rate (Adam)")
    ft.add_argument("--calib-steps", type=int, default=0, help="TD-Calib label-free steps before tuning")
    ft.add_argument("--val-fraction", type=float, default=0.2, help="fraction of the cases held out for "
                    "validation (early stopping)")
    ft.add_argument("--patience", type=int, default=4, help="validations without improvement before stopping")
    ft.add_argument("--seed", type=int, default=0, help="random seed (crops, validation split): the same seed "
                    "and inputs give the same adapter")
    ft.add_argument("--resample", action="store_true", help="resample images on other grids onto the first "
                    "modality's grid (only when already aligned in world space)")
    ft.set_defaults(handler=run_finetune)

    seg = subparsers.add_parser("segment", help="personalized segmentation from any subset of a patient's "
                                "modalities",
                                description="Segment a patient's head into tissues (grey matter, white matter, CSF, "
                                "skull, soft tissue) from any subset of the modalities the model knows, fused into "
                                "one personalized representation. The shipped default model "
                                f"{DEFAULT_MODELS['personalized']} knows "
                                "T1, T2, PD, FLAIR, CT and PET (personalized-v2: T1, T2, PD); a --base-model or "
                                "--adapter trained on other modalities accepts those. Implausible results (tissue "
                                "volumes no head has, low confidence) are reported as warnings. The images "
                                "must be on one grid (register them first, or --resample when already aligned).")
    seg.add_argument("--image", action="append", required=True, metavar="NAME=PATH",
                     help="one per modality, e.g. --image T1=t1.nii.gz --image T2=t2.nii.gz")
    seg.add_argument("--adapter", default=None, help="adapter folder or name (default: the base model alone)")
    seg.add_argument("--base-model", default=None, help="personalized model folder or name (default "
                     f"{DEFAULT_MODELS['personalized']})")
    seg.add_argument("--out", required=True, help="label map to write (.nii.gz, .nrrd, .seg.nrrd)")
    seg.add_argument("--probabilities", action="store_true", help="also write the class probabilities (C channels) "
                     "as <name>.probabilities.nii.gz beside --out")
    seg.add_argument("--reference-label", default=None, help="ground-truth label map: Dice per label in the result")
    seg.add_argument("--ttp-steps", type=int, default=0, help="test-time personalization steps (0 = off)")
    seg.add_argument("--refine", choices=("intensity", "none"), default="intensity", help="intensity (default): "
                     "refine the grey/white/CSF split with a Gaussian-mixture model of this scan's own intensities, "
                     "the network's probabilities as the prior; none: the network's answer as is")
    seg.add_argument("--resample", action="store_true", help="resample images on other grids onto the reference "
                     "grid (only when already aligned in world space)")
    seg.add_argument("--atlas", default=None, metavar="TPM", help="a 4D tissue probability map (6 volumes in SPM's "
                     "order: grey, white, CSF, bone, soft tissue, air; e.g. SPM12's tpm/TPM.nii, not shipped) used as "
                     "the spatial prior: placed on the image by affine registration, checked against the model's "
                     "brain (refused when they disagree)")
    seg.add_argument("--atlas-weight", type=float, default=None, metavar="W", help="power of the atlas in the "
                     f"fusion, 0 (off) to {MAX_ATLAS_WEIGHT:g} (default {DEFAULT_ATLAS_WEIGHT:g})")
    seg.set_defaults(handler=run_segment)


def parse_images(items: list[str]) -> dict[str, Path]:
    """`["T1=a.nii.gz", ...]` -> {"T1": Path}; UserInputError on malformed, duplicate or missing entries."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UserInputError("malformed --image", expected="NAME=PATH, e.g. T1=t1.nii.gz", got=item)
        name = name.strip()
        if name in out:
            raise UserInputError(f"modality {name} given twice", fix="pass each modality once")
        if not Path(path).exists():
            raise UserInputError(f"image for {name} not found", got=path, fix="check the path")
        out[name] = Path(path)
    return out


def _adapter_out(value: str) -> Path:
    path = Path(value)
    if path.parent == Path(".") and not value.startswith("."):
        from multimodalgen.models.registry import user_adapters_dir

        return user_adapters_dir() / value
    return path


def run_finetune(args, ctx) -> int:
    from multimodalgen.cli.output import run_verb_and_print

    params = {"cases_csv": args.cases, "base_model": args.base_model, "method": args.method, "steps": args.steps,
              "crop": args.crop, "lr": args.lr, "calib_steps": args.calib_steps, "val_fraction": args.val_fraction,
              "patience": args.patience, "seed": args.seed, "resample": args.resample,
              "labels": [s.strip() for s in args.labels.split(",")] if args.labels else None}
    out = _adapter_out(args.out)
    return run_verb_and_print(args, ctx, "finetune", params, out)


def run_segment(args, ctx) -> int:
    from multimodalgen.cli.output import run_verb_and_print

    params = {"images": {m: str(p) for m, p in parse_images(args.image).items()}, "adapter": args.adapter,
              "base_model": args.base_model, "probabilities": args.probabilities, "ttp_steps": args.ttp_steps,
              "refine": args.refine, "resample": args.resample, "reference_label": args.reference_label,
              "atlas": args.atlas, "atlas_weight": args.atlas_weight}
    return run_verb_and_print(args, ctx, "segment", params, args.out)
