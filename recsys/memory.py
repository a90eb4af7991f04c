"""Peak memory of this process, for reports (torch-free, so measuring it loads nothing heavy)."""

from __future__ import annotations

import resource


def peak_memory_mb() -> float:
    """This process's peak resident memory in MB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
