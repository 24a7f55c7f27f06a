"""Few-shot Segment Editor effect: time from a stroke to the preview on a generated 256^3 volume, warm worker.

Runs the effect's logic (`SegmentEditorMultiModalGenLib.effect_logic`) on the Slicer stand-ins of Testing/slicer
(scene, segmentation, editor node, scripted effect) with the real backend worker process, as in Slicer:
1. stroke 1: two structures painted on 3 axial slices; the worker is cold (process start, features);
2. the background full-resolution run after the pause (`refineDelayS`);
3. strokes 2..N+1: one more painted slice each (warm worker: features and head kept), each followed by its
   full-resolution run.
Per run it reports: stroke -> preview shown, Slicer-side export (painting -> file), worker round trip, engine time
(the few-shot engine's own `seconds.total`), import (file -> masked preview segments), and the seconds spent in
`slicer.util` stand-in calls (timing hooks of `segment_editor_standins.TimedUtil`). Target (issue 22): quick
preview <= 2 s after a stroke, warm.

    python benchmarks/slicer/bench_effect_preview.py [--size 256] [--threads 2] [--strokes 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for sub in ("MultiModalGen", "Testing/slicer", "benchmarks/fewshot"):
    sys.path.insert(0, str(ROOT / sub))

COLUMNS = ("stroke", "kind", "warm", "stroke_to_preview_s", "export_s", "worker_s", "engine_s", "import_s",
           "util_s")


class DictStore(dict):
    def value(self, key, default=None):
        return self.get(key, default)

    def setValue(self, key, value):
        self[key] = value


def run(size: int, threads: int, strokes: int, refine_delay: float) -> list[dict]:
    import segment_editor_standins as se
    import slicer_standins as sx
    from bench_interactive import make_volume
    from effect_helpers import make_scene, paint_slices

    from MultiModalGenLib.runner import TaskRunner

    sys.modules["slicer"] = sx.fake_slicer_module()
    image, labels = make_volume(size)
    truth = {"tumour": labels == 1, "cyst": labels == 2}
    runner = TaskRunner(settingsStore=DictStore())
    runner.updateSettings(device="cpu", threads=threads)
    util = se.TimedUtil()
    scene = make_scene(runner, affine=np.eye(4), util=util, image=image, truth=truth)
    scene.logic.refineDelayS = refine_delay
    z = np.flatnonzero(labels.any(axis=(0, 1)))
    pick = lambda q: int(z[int(round(q * (len(z) - 1)))])  # noqa: E731
    painted = sorted({pick(0.1), pick(0.5), pick(0.9)})
    extra = [pick(q) for q in (0.3, 0.7, 0.2, 0.8, 0.4, 0.6)]
    rows = []
    try:
        for n in range(strokes + 1):
            if n:
                painted = sorted(set(painted) | {extra[n - 1]})
            util.reset()
            scene.logic.autoUpdate = False  # one stroke event for both structures (as one Paint stroke would)
            paint_slices(scene, "tumour", painted)
            scene.logic.autoUpdate = True
            paint_slices(scene, "cyst", painted)
            first = len(scene.logic.timings)
            scene.logic.waitUntilIdle(timeout=600)
            quick_util = sum(util.seconds.values())
            deadline = time.monotonic() + 600
            runs = 2 if size > 128 else 1  # volumes beyond the quick crop also get a full-resolution run
            while len(scene.logic.timings) < first + runs and time.monotonic() < deadline:
                scene.logic.poll()
                scene.logic.waitUntilIdle(timeout=600)
                time.sleep(0.01)
            for t, util_s in zip(scene.logic.timings[first:], (quick_util, sum(util.seconds.values()) - quick_util)):
                rows.append(dict(t, stroke=n + 1, util_s=util_s))
            if scene.logic.lastError:
                raise RuntimeError(scene.logic.lastError)
    finally:
        runner.shutdown()
        scene.logic.cleanup()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in COLUMNS)
                     + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2, help="worker torch threads")
    ap.add_argument("--strokes", type=int, default=3, help="warm strokes after the first one")
    ap.add_argument("--refine-delay", type=float, default=0.5, help="pause before the full-resolution run (s)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = ap.parse_args(argv)
    rows = run(a.size, a.threads, a.strokes, a.refine_delay)
    print(f"size {a.size}^3, worker threads {a.threads}")
    print(table(rows))
    warm_quick = [r["stroke_to_preview_s"] for r in rows if r["kind"] == "quick" and r["warm"]]
    if warm_quick:
        print(f"warm quick preview: median {np.median(warm_quick):.2f} s, max {max(warm_quick):.2f} s "
              f"(target <= 2 s)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"size": a.size, "threads": a.threads, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
