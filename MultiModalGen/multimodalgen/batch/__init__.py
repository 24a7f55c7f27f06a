"""Cohort batch processing: one task over every study of a manifest, on this machine or on a Ray cluster.

`run(manifest, task, out_dir, *, engine="local"|"ray", ...) -> BatchSummary` is the Python API (usable from
Slicer's console); `multimodalgen batch ...` (`batch.cli`) is the command line. Modules: `manifest` (STUDIES.csv),
`tasks` (task registry and options), `study` (one study: status.json, fingerprints, failure isolation),
`local_engine` / `ray_engine` (where studies run), `runner` (the orchestration), `summary` (summary.csv).
"""

from multimodalgen.batch.runner import ENGINES, run
from multimodalgen.batch.summary import BatchSummary
from multimodalgen.batch.tasks import task_names

__all__ = ["run", "BatchSummary", "ENGINES", "task_names"]
