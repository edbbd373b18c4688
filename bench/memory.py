"""Peak memory of the running process, with whatever this machine offers.

The peak resident set size (RSS) comes from ``VmHWM`` in ``/proc/self/status`` (Linux),
else ``getrusage`` (Linux reports KiB, macOS bytes), else psutil's current RSS (a lower
bound). On Linux the peak can be reset (``reset_peak_rss``) once the data is prepared, so
that a transient spike while decompressing and converting the dataset is not counted:
what stays resident (data, libraries, model, buffers) still is.
"""

from __future__ import annotations

import sys
from pathlib import Path


def peak_rss_bytes() -> tuple[int | None, str]:
    """``(bytes, how)``: the process's peak RSS so far and where the number came from."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024, "/proc/self/status VmHWM"
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if maxrss > 0:
            return int(maxrss) * (1 if sys.platform == "darwin" else 1024), "getrusage"
    except (ImportError, OSError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss), "psutil rss (current, not peak)"
    except ImportError:
        return None, "unavailable"


def rusage_maxrss_bytes(ru_maxrss: int) -> int:
    """A child's ``ru_maxrss`` (as ``os.wait4`` returns it) in bytes."""
    return int(ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count from the current RSS (Linux ≥ 4.0); ``False`` elsewhere."""
    import gc

    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
