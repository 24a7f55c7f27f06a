"""Verb `fewshot`: painted slices -> 3D, support volume(s) -> query, or a saved task -> another patient.

    multimodalgen fewshot --image [NAME=]PATH ... --annotations A --out O [--axis N] [--labels 1,2] [--save-task T]
    multimodalgen fewshot --support-image [NAME=]S --support-label SL --query [NAME=]Q --out O
    multimodalgen fewshot --apply-task T --image [NAME=]PATH ... --out O

NAME is the modality (T1, T2, CT, ...; decides intensity normalisation, e.g. a CT window). Several support cases:
repeat --support-label once per case and give their channels with --support-image case after case.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from multimodalgen.errors import UserInputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fewshot", help="few-shot segmentation: a few painted slices (or labelled support "
                              "volumes) -> the whole 3D structure",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", action="append", default=[], metavar="[NAME=]PATH",
                   help="image channel of the patient (repeat for several modalities on one grid)")
    p.add_argument("--annotations", help="label map painted on a few slices (same grid as the images)")
    p.add_argument("--out", required=True, help="label map to write (.nii.gz, .nrrd, .seg.nrrd)")
    p.add_argument("--axis", default=None, help="slice axis of the painting: 0 (i), 1 (j), 2 (k), or a comma list "
                   "for several axes (default: detected)")
    p.add_argument("--labels", default=None, help="comma-separated label values to segment (default: all painted)")
    p.add_argument("--save-task", default=None, metavar="T", help="save the trained head as a task folder")
    p.add_argument("--task", default=None, metavar="T", help="start from this task's head (warm start)")
    p.add_argument("--apply-task", default=None, metavar="T", help="apply a saved task to --image (no painting)")
    p.add_argument("--support-image", action="append", default=[], metavar="[NAME=]PATH",
                   help="image channel of a labelled support case")
    p.add_argument("--support-label", action="append", default=[], metavar="PATH",
                   help="label map of a support case (repeat once per case)")
    p.add_argument("--query", action="append", default=[], metavar="[NAME=]PATH", help="query image channel")
    p.add_argument("--register", choices=("auto", "on", "off"), default="auto",
                   help="support mode: carry the support labels by registration (auto: when available)")
    p.add_argument("--encoder", choices=("auto", "on", "off"), default="off",
                   help="also use the foundation encoder's features: off (default: the shipped encoder lowered "
                        "Dice in benchmarks/fewshot/RESULTS.md), on, or auto (on when encoder weights are shipped)")
    p.add_argument("--resample", action="store_true", help="resample channels / the painting on other grids onto "
                   "the first image's grid (reported); default: refuse")
    p.add_argument("--seed", type=int, default=0, help="random seed of the head's training: the same seed and "
                   "inputs give the same labels")
    p.set_defaults(handler=run)


def parse_image_args(items: list[str], what: str) -> list[tuple[str | None, str]]:
    """`["T1=a.nii.gz", "b.nii.gz"]` -> [("T1", "a.nii.gz"), (None, "b.nii.gz")]; modality names upper-cased."""
    from multimodalgen.volume import KNOWN_MODALITIES

    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or Path(item).exists():
            name, path = "", item
        if not path:
            raise UserInputError(f"malformed {what}", expected="[NAME=]PATH, e.g. T1=t1.nii.gz", got=item)
        if not Path(path).exists():
            raise UserInputError(f"{what} not found: {path}", fix="check the path")
        modality = name.strip().upper() or None
        out.append((modality if modality in KNOWN_MODALITIES else None, path))
    return out


def _int_list(text: str | None, what: str):
    if text is None:
        return None
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserInputError(f"invalid {what}", expected="comma-separated integers", got=text) from None
    return values[0] if what == "--axis" and len(values) == 1 else values


def _pairs(items: list[str], what: str) -> tuple[list[str], list[str | None]]:
    pairs = parse_image_args(items, what)
    return [p for _, p in pairs], [m for m, _ in pairs]


def run(args, ctx) -> int:
    from multimodalgen.cli.output import run_verb_and_print

    support = bool(args.support_label or args.support_image or args.query)
    params = {"axis": _int_list(args.axis, "--axis"), "labels": _int_list(args.labels, "--labels"),
              "seed": args.seed, "encoder": args.encoder, "resample": args.resample}
    if support and (args.image or args.annotations or args.apply_task):
        raise UserInputError("choose one few-shot mode", expected="--annotations (painted slices), or "
                             "--support-image/--support-label/--query (support volumes), or --apply-task",
                             got="support options together with --image/--annotations/--apply-task",
                             fix="see `multimodalgen fewshot --help`")
    if support:
        if not (args.support_image and args.support_label and args.query):
            raise UserInputError("support mode needs --support-image, --support-label and --query",
                                 got=f"{len(args.support_image)} support image(s), {len(args.support_label)} "
                                     f"label(s), {len(args.query)} query image(s)")
        n_cases = len(args.support_label)
        paths, modalities = _pairs(args.support_image, "--support-image")
        if len(paths) % n_cases:
            raise UserInputError("support images do not split evenly into cases",
                                 expected=f"a multiple of {n_cases} support images (channels per case x cases)",
                                 got=f"{len(paths)}")
        per = len(paths) // n_cases
        params.update(support_images=[paths[i * per:(i + 1) * per] for i in range(n_cases)],
                      support_labels=list(args.support_label), register=args.register)
        params["images"], query_modalities = _pairs(args.query, "--query")
        params["modalities"] = query_modalities if any(query_modalities) else modalities[:per]
    else:
        if not args.image:
            raise UserInputError("no image given", expected="--image [NAME=]PATH (repeat per channel)")
        params["images"], params["modalities"] = _pairs(args.image, "--image")
        params.update(annotation=args.annotations, apply_task=args.apply_task, save_task=args.save_task,
                      task=args.task)
    return run_verb_and_print(args, ctx, "fewshot", params, args.out)
