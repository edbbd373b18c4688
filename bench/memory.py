"""Peak memory of the running process, with whatever this machine offers.

The peak resident set size (RSS) comes from ``getrusage`` (Linux reports KiB, macOS bytes),
else from ``VmHWM`` in ``/proc/self/status``, else psutil's current RSS (a lower bound).
"""

from __future__ import annotations

import sys
from pathlib import Path


def peak_rss_bytes() -> tuple[int | None, str]:
    """``(bytes, how)``: the process's peak RSS so far and where the number came from."""
    try:
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if maxrss > 0:
            return int(maxrss) * (1 if sys.platform == "darwin" else 1024), "getrusage"
    except (ImportError, OSError):
        pass
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024, "/proc/self/status VmHWM"
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss), "psutil rss (current, not peak)"
    except ImportError:
        return None, "unavailable"


def rusage_maxrss_bytes(ru_maxrss: int) -> int:
    """A child's ``ru_maxrss`` (as ``os.wait4`` returns it) in bytes."""
    return int(ru_maxrss) * (1 if sys.platform == "darwin" else 1024)
