"""Verbs `pretrain --config C.json --out DIR [--resume]` and `features --image X --out F.nii.gz`."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    pre = subparsers.add_parser("pretrain", help="pretrain the contrast-invariant encoder on synthetic data "
                                "(resumable; CUDA when present)")
    pre.add_argument("--config", required=True, help="pretraining config JSON, e.g. "
                     "MultiModalGen/Resources/Models/encoder-v1/pretrain_config.json")
    pre.add_argument("--out", required=True, help="folder for checkpoints (last.pt), config.json, train_log.jsonl")
    pre.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    pre.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in this call")
    pre.set_defaults(handler=run_pretrain)

    feat = subparsers.add_parser("features", help="write the 16-channel encoder feature map of an image")
    feat.add_argument("--image", required=True, help="image file or DICOM folder")
    feat.add_argument("--out", required=True, help="output image (.nii.gz, .nrrd, .mha), 16 channels, same grid")
    feat.add_argument("--modality", default=None, help="T1, T2, PD, FLAIR, CT, PET... (CT selects the HU window)")
    feat.add_argument("--encoder", default=None, help="shipped encoder name or folder (default: encoder-v2)")
    feat.add_argument("--patch", type=int, default=128, help="sliding-window size in voxels")
    feat.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap fraction [0, 0.9]")
    feat.set_defaults(handler=run_features)


def run_pretrain(args, ctx) -> int:
    import json

    from multimodalgen.cli.output import print_result
    from multimodalgen.encoder.train import PretrainConfig, pretrain
    from multimodalgen.errors import UserInputError

    path = Path(args.config)
    if not path.is_file():
        raise UserInputError("pretraining config not found", expected="a JSON file", got=str(path),
                             fix="pass e.g. MultiModalGen/Resources/Models/encoder-v1/pretrain_config.json")
    try:
        cfg = PretrainConfig.from_json(path)
    except (ValueError, TypeError) as exc:
        raise UserInputError(f"invalid pretraining config {path}: {exc}",
                             fix="see multimodalgen.encoder.train.PretrainConfig for the fields") from exc
    try:
        result = pretrain(cfg, args.out, ctx.device, resume=args.resume, max_steps=args.max_steps,
                          progress=ctx.progress,
                          log=(lambda r: print(json.dumps({"event": "log", **r}), flush=True))
                          if args.progress == "json" else None)
    except FileExistsError as exc:
        raise UserInputError(str(exc), fix="add --resume, or choose another --out") from exc
    except FileNotFoundError as exc:
        raise UserInputError(str(exc), expected="a pretraining checkpoint (*.pt) or a shipped encoder folder",
                             fix=f"correct the path in {path}") from exc
    except ValueError as exc:
        if "different config" in str(exc):
            raise UserInputError(str(exc)) from exc
        raise
    print_result(args, {"step": result["step"], "loss": result["loss"], "out": str(args.out)},
                 f"pretrained to step {result['step']} (loss {result['loss']}) in {args.out}")
    return 0


def run_features(args, ctx) -> int:
    from multimodalgen.cli.output import run_verb_and_print

    params = {"image": args.image, "modality": args.modality, "encoder": args.encoder, "patch": args.patch,
              "overlap": args.overlap}
    return run_verb_and_print(args, ctx, "features", params, args.out)
