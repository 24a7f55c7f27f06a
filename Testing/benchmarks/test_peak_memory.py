"""The benchmarks' peak-memory helper counts the measured child only, not the benchmark that starts it."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from peak_memory import own_peak_rss_mb, run_with_peak_memory

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM needs Linux /proc")


def test_a_child_peak_leaves_out_the_parent_memory_and_sees_the_child_allocation():
    parent_ballast = np.ones(400 * 2**20 // 8)        # 400 MiB resident in this process while the child runs
    child = [sys.executable, "-c", "b = bytearray(150 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(0.3)"]
    code, stderr, _, peak_gb = run_with_peak_memory(child, poll_s=0.01)
    assert code == 0, stderr
    assert 0.15 <= peak_gb < 0.35, f"child peak {peak_gb:.2f} GB: expected its 150 MiB + interpreter, not the parent's"
    assert own_peak_rss_mb() >= 400 * 1.0, "this process holds 400 MiB of ballast"
    assert parent_ballast[-1] == 1.0


def test_a_failing_child_reports_its_exit_code_and_stderr():
    code, stderr, _, _ = run_with_peak_memory([sys.executable, "-c", "import sys; sys.exit('broken input')"])
    assert code == 1 and "broken input" in stderr
