"""`multimodalgen register`: the command-line driver of `register_files` (no torch import at parser build time)."""

from __future__ import annotations

from multimodalgen.registration.contract import INITS, MODES, PRESETS
from multimodalgen.registration.outputs import DEFAULT_OUTPUTS, OUTPUT_FILES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "register", help="align a moving image to a fixed image (rigid -> affine -> deformable, multimodal)",
        description="Register MOVING to FIXED (any modalities, grids and orientations). Writes into --out-dir the "
                    "outputs chosen with --outputs: " + ", ".join(f"{k} ({v})" for k, v in OUTPUT_FILES.items())
                    + ". Default: " + ",".join(DEFAULT_OUTPUTS) + " (warped_labels only with --moving-labels); "
                    "transform.h5 maps fixed to moving points (ITK, LPS); report.json holds the metrics, the time "
                    "of each phase and the share spent reading and writing files.")
    p.add_argument("--fixed", required=True, help="fixed (reference) image")
    p.add_argument("--moving", required=True, help="moving image (resampled into the fixed grid)")
    p.add_argument("--moving-labels", default=None, help="label map on the moving grid, warped with nearest neighbour")
    p.add_argument("--fixed-labels", default=None, help="label map on the fixed grid: Dice of the warped labels")
    p.add_argument("--fixed-mask", default=None, help="mask on the fixed grid: similarity only inside it")
    p.add_argument("--moving-mask", default=None, help="mask on the moving grid: moving image blanked outside it")
    p.add_argument("--mode", choices=MODES, default="deformable", help="transform model (default: deformable)")
    p.add_argument("--preset", choices=PRESETS, default="fast", help="speed/accuracy preset (default: fast)")
    p.add_argument("--init", choices=INITS, default="moments",
                   help="initial alignment: moments (centres of mass, default), centers (field-of-view centres), "
                        "none (header geometry)")
    p.add_argument("--diffeomorphic", action="store_true", default=None,
                   help="integrate the deformable field as a stationary velocity (scaling and squaring)")
    p.add_argument("--inverse-consistent", action="store_true", default=None,
                   help="make the discrete stage inverse-consistent (default on with --preset accurate)")
    p.add_argument("--features", choices=("mind", "mind+encoder"), default=None,
                   help="similarity features: mind (MIND-SSC, default) or mind+encoder (adds 0.1 x the foundation "
                        "encoder's features; slower, see benchmarks/registration/README.md)")
    p.add_argument("--encoder", default=None, metavar="NAME[:GROUP]",
                   help="encoder of --features mind+encoder and its channel group (all | correspondence | tissue), "
                        "e.g. encoder-v4:correspondence (default: the default encoder, all channels)")
    p.add_argument("--outputs", default="default", metavar="NAMES",
                   help="comma-separated outputs to write, among " + ", ".join(OUTPUT_FILES) + "; 'default' = "
                        + ",".join(DEFAULT_OUTPUTS) + " (displacement is opt-in: a dense field, tens of MB on a 1 mm "
                        "grid); 'all' = every one; e.g. --outputs transform,report or --outputs default,displacement "
                        "(default: default)")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay.png (same as leaving overlay "
                                                                 "out of --outputs)")
    p.add_argument("--out-dir", required=True, help="output folder")
    p.set_defaults(handler=run)

    a = subparsers.add_parser(
        "apply", help="resample an image (or labels) through a saved transform onto a reference grid",
        description="Apply TRANSFORM (e.g. transform.h5 from `register`: reference/fixed -> moving points) to MOVING "
                    "on the grid of REFERENCE: reproduces warped.nii.gz, or warps other images of the same patient.")
    a.add_argument("--transform", required=True, help="ITK transform file (.h5, .tfm)")
    a.add_argument("--moving", required=True, help="image (or label map with --labels) to resample")
    a.add_argument("--reference", required=True, help="image whose grid the output takes (the fixed image)")
    a.add_argument("--out", required=True, help="output image (.nii.gz, .nrrd, .mha, .seg.nrrd)")
    a.add_argument("--labels", action="store_true", help="label map: nearest neighbour, values kept")
    a.add_argument("--fill", type=float, default=0.0, help="value outside the moving image (default 0)")
    a.add_argument("--inverse", action="store_true", help="apply the inverse of the transform")
    a.set_defaults(handler=run_apply)


def run_apply(args, ctx) -> int:
    from multimodalgen.cli.output import run_verb_and_print

    params = {"moving": args.moving, "transform": args.transform, "reference": args.reference,
              "labels": args.labels, "fill": args.fill, "inverse": args.inverse}
    return run_verb_and_print(args, ctx, "apply", params, args.out)


def _keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory (up to its 32 MB mmap ceiling) instead of returning it to the OS.

    The registration allocates and frees many 1-30 MB tensors; with the default settings each one comes back as
    fresh zero pages, i.e. ~10^6 page faults and 2-3 s of system CPU per run. Process-wide, so done only by this
    command-line driver (not by the library); a no-op where glibc's `mallopt` is unavailable.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)   # M_MMAP_THRESHOLD: blocks below 32 MB come from the heap
        libc.mallopt(-1, 1024 * 1024 * 1024)  # M_TRIM_THRESHOLD: do not give the heap top back after each free
        libc.mallopt(-2, 64 * 1024 * 1024)   # M_TOP_PAD: grow the heap in 64 MB steps
    except (OSError, AttributeError):
        pass


def run(args, ctx) -> int:
    from multimodalgen.cli.output import run_verb_and_print

    _keep_freed_memory()
    params = {"fixed": args.fixed, "moving": args.moving, "moving_labels": args.moving_labels,
              "fixed_labels": args.fixed_labels, "fixed_mask": args.fixed_mask, "moving_mask": args.moving_mask,
              "mode": args.mode, "preset": args.preset, "init": args.init, "overlay": not args.no_overlay,
              "outputs": args.outputs,
              "diffeomorphic": args.diffeomorphic, "inverse_consistent": args.inverse_consistent,
              "features": args.features, "encoder": args.encoder}
    return run_verb_and_print(args, ctx, "register", params, args.out_dir)
