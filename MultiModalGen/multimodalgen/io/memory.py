"""Memory estimates made before loading or computing, so absurd requests are refused with the estimate."""

from __future__ import annotations

import os

from multimodalgen.errors import ResourceError

GIB = 1024 ** 3


def available_memory_bytes() -> int:
    """Memory available to this process now (MemAvailable on Linux, else physical memory), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * GIB


def check_fits_in_memory(n_bytes: float, what: str, available: int | None = None, fraction: float = 0.8) -> None:
    """Raise `ResourceError` if `n_bytes` exceeds `fraction` of the available memory."""
    avail = available_memory_bytes() if available is None else available
    if n_bytes > fraction * avail:
        raise ResourceError(
            f"{what} would not fit in memory",
            expected=f"at most {fraction * avail / GIB:.1f} GiB (80% of the {avail / GIB:.1f} GiB available)",
            got=f"an estimated {n_bytes / GIB:.1f} GiB",
            fix="crop or downsample the volume first, or use a machine with more memory")
