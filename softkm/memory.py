"""Returning freed memory to the operating system between the phases of a fit.

glibc keeps freed blocks below its mmap threshold in the process heap. A phase that
allocates many such blocks and frees them (reading columns, drawing the sample for
k-means++) would otherwise leave its peak in the resident memory of the phases after it.
"""

from __future__ import annotations

import os


def trim_c_heap() -> None:
    """Return the C heap's free pages to the OS (glibc only; elsewhere nothing happens)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (ValueError, OSError, AttributeError):
        return
