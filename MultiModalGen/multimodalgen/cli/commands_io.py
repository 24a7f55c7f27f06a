"""Verbs `info PATH` and `convert IN OUT [--reference R] [--spacing S] [--label] [--orient CODE]`."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(subparsers) -> None:
    info = subparsers.add_parser("info", help="print geometry, orientation, spacing and value range of an image",
                                 description="Describe any image: a 3D volume, a 2D image or a single DICOM slice "
                                 "(only the engines need 3D). Prints to the terminal; writes nothing.")
    info.add_argument("path", help="image file (.nii/.nii.gz/.nrrd/.mha/.seg.nrrd/.dcm, 2D or 3D) or DICOM folder")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(handler=run_info)

    convert = subparsers.add_parser("convert", help="convert between formats, optionally resample or reorient")
    convert.add_argument("input", help="image or label map file, or DICOM folder")
    convert.add_argument("output", help="format from the name: .nii.gz, .nrrd, .mha, .seg.nrrd")
    convert.add_argument("--label", action="store_true", help="treat as a label map (nearest-neighbour, integers)")
    convert.add_argument("--reference", help="resample onto this image's grid (explicit resampling)")
    convert.add_argument("--spacing", type=float, help="resample to isotropic spacing in mm")
    convert.add_argument("--orient", help="reorient exactly (no interpolation) to e.g. RAS or LPS")
    convert.set_defaults(handler=run_convert)


def run_info(args, ctx) -> int:
    from multimodalgen.io import read_volume
    from multimodalgen.io.readers import read_labels_sidecar
    from multimodalgen.volume import describe

    volume = read_volume(args.path, allow_nonfinite=True, allow_2d=True)
    summary = describe(volume)
    summary["path"] = args.path
    summary["dimensions"] = 2 if volume.metadata.get("2d") else 3
    if "segments" in volume.metadata:
        summary["segments"] = volume.metadata["segments"]
    elif not Path(args.path).is_dir():
        summary.update(read_labels_sidecar(args.path))
    if args.json or args.progress == "json":
        print(json.dumps({"event": "result", **summary}) if args.progress == "json" else json.dumps(summary, indent=2))
        return 0
    lines = [
        f"path         {args.path}",
        f"shape        {summary['shape']}  ({summary['channels']} channel(s), {summary['dtype']})",
        f"spacing      {summary['spacing_mm']} mm",
        f"extent       {summary['extent_mm']} mm",
        f"orientation  {summary['orientation']} (voxel axes i,j,k point towards these RAS letters)",
        f"origin       {summary['origin_ras_mm']} mm (RAS, centre of voxel 0,0,0)",
        f"direction    {summary['direction_ras']}",
        f"values       min {summary['min']:.6g}  max {summary['max']:.6g}  mean {summary['mean']:.6g}"
        if summary["min"] is not None else "values       none finite",
    ]
    if summary["dimensions"] == 2:
        lines.append("note         a 2D image (one slice): described here; register, segment, fewshot and "
                     "features need a 3D volume (for DICOM, the folder with all slices of the series)")
    if summary["nonfinite_voxels"]:
        lines.append(f"WARNING      {summary['nonfinite_voxels']} NaN/Inf voxels")
    for segment in summary.get("segments", []):
        lines.append(f"segment      {segment['label']}: {segment['name']}")
    print("\n".join(lines))
    return 0


def run_convert(args, ctx) -> int:
    from multimodalgen.cli.output import run_verb_and_print

    params = {"input": args.input, "label": args.label, "reference": args.reference, "spacing": args.spacing,
              "orient": args.orient}
    return run_verb_and_print(args, ctx, "convert", params, args.output)
