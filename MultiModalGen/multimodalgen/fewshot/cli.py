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

from multimodalgen.cli.output import print_result
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
                   help="add the foundation encoder's features (auto: when its weights are shipped; default off "
                        "until the shipped weights are shown to help, see benchmarks/fewshot/README.md)")
    p.add_argument("--resample", action="store_true", help="resample channels / the painting on other grids onto "
                   "the first image's grid (reported); default: refuse")
    p.add_argument("--seed", type=int, default=0)
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


def _config(args):
    from multimodalgen.fewshot.engine import FewShotConfig
    from multimodalgen.fewshot.features import FeatureConfig

    return FewShotConfig(features=FeatureConfig(encoder=args.encoder))


def run(args, ctx) -> int:
    modes = [bool(args.annotations), bool(args.support_label or args.support_image or args.query),
             bool(args.apply_task)]
    if sum(modes) != 1:
        raise UserInputError("choose one few-shot mode", expected="--annotations (painted slices), or "
                             "--support-image/--support-label/--query (support volumes), or --apply-task",
                             got=f"{sum(modes)} modes", fix="see `multimodalgen fewshot --help`")
    if modes[0]:
        return _run_slices(args, ctx)
    if modes[1]:
        return _run_support(args, ctx)
    return _run_apply(args, ctx)


def _run_slices(args, ctx) -> int:
    from multimodalgen.fewshot.api import segment_files

    if not args.image:
        raise UserInputError("no image given", expected="--image [NAME=]PATH (repeat per channel)")
    report = segment_files(parse_image_args(args.image, "--image"), args.annotations, args.out,
                           axis=_int_list(args.axis, "--axis"), labels=_int_list(args.labels, "--labels"),
                           device=ctx.device, progress=ctx.progress, seed=args.seed, config=_config(args),
                           resample=args.resample, save_task=args.save_task, task=args.task)
    for note in report.get("notes", []):
        print(f"note: {note}")
    print_result(args, report, f"wrote {args.out} (labels {report.get('labels')}, "
                 f"{report.get('seconds', {}).get('total', 0):.1f} s)" +
                 (f"; task saved to {report['task']}" if report.get("task") else ""))
    return 0


def _run_support(args, ctx) -> int:
    from multimodalgen.fewshot.support import support_files

    if not (args.support_image and args.support_label and args.query):
        raise UserInputError("support mode needs --support-image, --support-label and --query",
                             got=f"{len(args.support_image)} support image(s), {len(args.support_label)} label(s), "
                                 f"{len(args.query)} query image(s)")
    images = parse_image_args(args.support_image, "--support-image")
    n_cases = len(args.support_label)
    if len(images) % n_cases:
        raise UserInputError("support images do not split evenly into cases",
                             expected=f"a multiple of {n_cases} support images (channels per case x cases)",
                             got=f"{len(images)}")
    per = len(images) // n_cases
    cases = [images[i * per:(i + 1) * per] for i in range(n_cases)]
    report = support_files(cases, args.support_label, parse_image_args(args.query, "--query"), args.out,
                           labels=_int_list(args.labels, "--labels"), device=ctx.device, progress=ctx.progress,
                           seed=args.seed, register=args.register)
    for note in report.get("notes", []):
        print(f"note: {note}")
    print_result(args, report, f"wrote {args.out} (labels {report.get('labels')}, {report.get('seconds')} s)")
    return 0


def _run_apply(args, ctx) -> int:
    from multimodalgen.fewshot.api import apply_task_files

    if not args.image:
        raise UserInputError("no image given", expected="--image [NAME=]PATH (same channels as the task)")
    report = apply_task_files(args.apply_task, parse_image_args(args.image, "--image"), args.out,
                              device=ctx.device, progress=ctx.progress)
    print_result(args, report, f"wrote {args.out} with task {args.apply_task}")
    return 0
