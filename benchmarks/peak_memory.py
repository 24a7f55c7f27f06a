"""Peak memory of a benchmark's measured process, counted from that process's own address space.

Why not `resource.getrusage`: on Linux a child started with fork (or vfork/posix_spawn) + exec inherits the parent's
resident-set high-water mark (the kernel folds the old address space's peak into `ru_maxrss` at exec), so
`getrusage(RUSAGE_SELF)` inside the child and `getrusage(RUSAGE_CHILDREN)` in the parent both report at least the
benchmark's own peak at spawn time. `VmHWM` in `/proc/<pid>/status` is the high-water mark of the address space
created by exec, so it counts only what the measured program touched.

Two helpers, one per way a benchmark measures:
- `own_peak_rss_mb()`: called inside the measured process (a `python -c` child printing JSON).
- `run_with_peak_memory(cmd)`: runs a command and polls the child's `VmHWM` from outside.
Without /proc (macOS) the first falls back to `ru_maxrss` (which may then include the parent's share) and the second
returns NaN.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _vmhwm_kb(pid: int | str) -> float | None:
    """`VmHWM` of process `pid` ("self" for this one) in kB, or None where /proc does not have it."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1])
    return None


def own_peak_rss_mb() -> float:
    """This process's peak resident memory in MiB since its exec (`VmHWM`); `ru_maxrss` where /proc is missing."""
    kb = _vmhwm_kb("self")
    if kb is not None:
        return kb / 1024.0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024.0   # macOS reports bytes, Linux kB


def run_with_peak_memory(cmd: list[str], poll_s: float = 0.05) -> tuple[int, str, float, float]:
    """Run `cmd`; return (exit code, stderr, wall seconds, the child's own peak RSS in GB, counted as 10^6 kB).

    The peak is the child's `VmHWM`, polled every `poll_s` seconds while it runs (a peak shorter than `poll_s`
    between two polls is still counted: `VmHWM` is a high-water mark). Without /proc the peak is NaN."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peak_kb = None
        while proc.poll() is None:
            kb = _vmhwm_kb(proc.pid)
            if kb is not None:
                peak_kb = max(kb, peak_kb or 0.0)
            time.sleep(poll_s)
        seconds = time.perf_counter() - t0
        err.seek(0)
        return proc.returncode, err.read(), seconds, float("nan") if peak_kb is None else peak_kb / 1e6
