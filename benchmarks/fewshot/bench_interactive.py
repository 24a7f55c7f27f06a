"""Interactive timings and memory of the few-shot engine on a generated 256^3 volume (no real data needed).

Measures, in one process with `--threads` torch threads (default 2):
1. first run, full volume: a new `FewShotSession`, 3 painted slices, `segment()` (features on the region of
   interest, training from scratch, prediction, post-processing);
2. incremental update: one more painted slice, `segment()` again (features cached, head continued);
3. preview on a new crop (its features computed in the call), then whole-volume features (`warm_up()`, the cost a
   worker pays once per volume while the user paints), then the preview after a stroke with the session warm
   (one more painted slice, `preview()` on a crop of at most 128^3);
4. peak resident memory of the process (ru_maxrss).
Targets (issue 24): preview after a stroke <= 1 s warm (256^3 volume, preview crop <= 128^3); full result <= 10 s
on CPU; peak memory <= 2 GB; incremental update faster than the first run.

    python benchmarks/fewshot/bench_interactive.py [--size 256] [--threads 2] [--encoder off] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "MultiModalGen"))


def make_volume(size: int, seed: int = 0):
    """A smooth textured 1 mm volume with a bright ellipsoidal structure (label 1) and a darker one (label 2)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.normal(size=(size // 4,) * 3).astype(np.float32), 2.0)
    texture = ndi.zoom(noise, 4, order=1)[:size, :size, :size]
    grid = np.ogrid[:size, :size, :size]
    c = size / 2
    ell1 = ((grid[0] - c) / (0.12 * size)) ** 2 + ((grid[1] - c) / (0.09 * size)) ** 2 + \
        ((grid[2] - c) / (0.08 * size)) ** 2 <= 1
    ell2 = ((grid[0] - c - 0.2 * size) / (0.06 * size)) ** 2 + ((grid[1] - c) / (0.06 * size)) ** 2 + \
        ((grid[2] - c) / (0.07 * size)) ** 2 <= 1
    image = 200 + 400 * texture + 300 * ell1 - 120 * ell2 + rng.normal(0, 20, (size,) * 3).astype(np.float32)
    truth = np.zeros((size,) * 3, np.uint8)
    truth[ell1] = 1
    truth[ell2 & ~ell1] = 2
    return image.astype(np.float32), truth


def paint(truth, slices):
    out = np.zeros_like(truth)
    out[:, :, slices] = truth[:, :, slices]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encoder", choices=("auto", "on", "off"), default="off")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    a = ap.parse_args(argv)
    import torch

    from multimodalgen.fewshot import FewShotSession
    from multimodalgen.fewshot.engine import FewShotConfig
    from multimodalgen.fewshot.features import FeatureConfig
    from multimodalgen.volume import Volume

    torch.set_num_threads(a.threads)
    image, truth = make_volume(a.size)
    affine = np.eye(4)
    vol = Volume(image, affine, "T1")
    z = np.flatnonzero(truth.any(axis=(0, 1)))
    pick = lambda q: int(z[int(round(q * (len(z) - 1)))])  # noqa: E731
    three = sorted({pick(0.1), pick(0.5), pick(0.9)})
    config = FewShotConfig(features=FeatureConfig(encoder=a.encoder))
    out: dict = {"size": a.size, "threads": a.threads, "painted_first": three}

    t0 = time.perf_counter()
    session = FewShotSession([vol], config=config, device="cpu")
    first = session.segment(Volume(paint(truth, three), affine, "LABEL"))
    out["first_full_s"] = time.perf_counter() - t0
    out["first_report_s"] = first.metadata["fewshot"]["seconds"]
    out["box"] = first.metadata["fewshot"]["box"]

    four = sorted(set(three) | {pick(0.3)})
    t0 = time.perf_counter()
    second = session.segment(Volume(paint(truth, four), affine, "LABEL"))
    out["incremental_full_s"] = time.perf_counter() - t0
    out["incremental_report_s"] = second.metadata["fewshot"]["seconds"]

    five = sorted(set(four) | {pick(0.7)})
    t0 = time.perf_counter()
    preview = session.preview(Volume(paint(truth, five), affine, "LABEL"), max_size=128)
    out["preview_new_crop_s"] = time.perf_counter() - t0  # the crop's features computed in this call

    # the worker computes the whole volume's features once while the user paints (`warm_up`); a preview after a
    # stroke then only trains (continued head) and predicts on the crop
    out["whole_volume_features_s"] = session.warm_up()
    six = sorted(set(five) | {pick(0.2)})
    t0 = time.perf_counter()
    preview = session.preview(Volume(paint(truth, six), affine, "LABEL"), max_size=128)
    out["preview_warm_s"] = time.perf_counter() - t0
    out["preview_report_s"] = preview.metadata["fewshot"]["seconds"]
    out["preview_box"] = preview.metadata["fewshot"]["box"]
    out["peak_memory_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    keep = np.ones(a.size, bool)
    keep[four] = False
    for label in (1, 2):
        p, t = second.array[:, :, keep] == label, truth[:, :, keep] == label
        out[f"dice_unannotated_label{label}"] = float(2 * (p & t).sum() / max(1, p.sum() + t.sum()))
    print(json.dumps(out, indent=1, default=float))
    checks = [("preview warm <= 1 s", out["preview_warm_s"] <= 1.0),
              ("first full run <= 10 s", out["first_full_s"] <= 10.0),
              ("incremental full run <= 10 s", out["incremental_full_s"] <= 10.0),
              ("peak memory <= 2 GB", out["peak_memory_gb"] <= 2.0),
              ("incremental < first", out["incremental_full_s"] < out["first_full_s"])]
    for name, ok in checks:
        print(f"{name}: {'met' if ok else 'MISSED'}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
