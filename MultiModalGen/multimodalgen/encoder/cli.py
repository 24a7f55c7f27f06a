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
    from multimodalgen.encoder.train import TrainConfig, pretrain
    from multimodalgen.errors import UserInputError

    path = Path(args.config)
    if not path.is_file():
        raise UserInputError("pretraining config not found", expected="a JSON file", got=str(path),
                             fix="pass e.g. MultiModalGen/Resources/Models/encoder-v1/pretrain_config.json")
    try:
        cfg = TrainConfig.from_json(path)
    except (ValueError, TypeError) as exc:
        raise UserInputError(f"invalid pretraining config {path}: {exc}",
                             fix="see multimodalgen.encoder.train.TrainConfig for the fields") from exc
    try:
        result = pretrain(cfg, args.out, ctx.device, resume=args.resume, max_steps=args.max_steps,
                          progress=ctx.progress,
                          log=(lambda r: print(json.dumps({"event": "log", **r}), flush=True))
                          if args.progress == "json" else None)
    except FileExistsError as exc:
        raise UserInputError(str(exc), fix="add --resume, or choose another --out") from exc
    except ValueError as exc:
        if "different config" in str(exc):
            raise UserInputError(str(exc)) from exc
        raise
    print_result(args, {"step": result["step"], "loss": result["loss"], "out": str(args.out)},
                 f"pretrained to step {result['step']} (loss {result['loss']}) in {args.out}")
    return 0


def run_features(args, ctx) -> int:
    from multimodalgen.cli.output import print_result
    from multimodalgen.encoder.inference import features_for_volume, fold_batchnorm
    from multimodalgen.encoder.weights import load_encoder
    from multimodalgen.errors import UserInputError
    from multimodalgen.io import read_volume, write_volume

    if not 0.0 <= args.overlap <= 0.9:
        raise UserInputError("invalid --overlap", expected="a fraction in [0, 0.9]", got=str(args.overlap))
    if args.patch < 16:
        raise UserInputError("invalid --patch", expected="at least 16 voxels", got=str(args.patch))
    volume = read_volume(args.image, modality=args.modality)
    model = fold_batchnorm(load_encoder(args.encoder, device=ctx.device))
    feats = features_for_volume(volume, model, ctx.device, patch=args.patch, overlap=args.overlap,
                                progress=ctx.progress)
    path = write_volume(feats, args.out)
    print_result(args, {"out": str(path), "shape": list(feats.array.shape)},
                 f"wrote {feats.array.shape[0]}-channel features {tuple(feats.array.shape[1:])} to {path}")
    return 0
