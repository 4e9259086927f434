"""Let glibc's malloc keep and reuse freed memory instead of handing it back.

By default glibc serves every allocation above a threshold (128 KB, adapting up
to 32 MB) with fresh pages from the kernel and returns them on free, so each
activation map of a CNN forward pass is page-faulted and zeroed anew (~65,600
page faults per pass of 4 images at 288x384; 29% of a cold `index` run's CPU
time was system time). Raising the mmap and trim thresholds made a query's
backbone pass 1.20x and extraction 1.31x faster here (BENCHMARKS.md).
Elsewhere (no glibc) a no-op.
"""

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters
THRESHOLD = 1 << 30  # larger than any activation map of a batch of 64 views


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (idempotent);
    True when malloc took the settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    taken = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
    # one arena for every thread: the app's request threads and its batching
    # worker then reuse the memory the main thread's passes freed, instead of
    # each growing (and page-faulting) an arena of its own
    taken = bool(mallopt(M_ARENA_MAX, 1)) and taken
    if not taken:
        log.debug("malloc did not take the mmap/trim thresholds; feature extraction runs slower")
    return taken
