"""Settings the BLAS library reads once, when it loads: applied before anything imports numpy.

OpenBLAS keeps its idle threads spinning for ``2**28`` CPU cycles (about 0.1 s)
after every call. The engine follows each GEMM block with a numba kernel on
the same cores (heaps, exact distances), and the spinning threads take those
cores from it: on 2 threads the neighbour screen ran about as fast as on one.
``OPENBLAS_THREAD_TIMEOUT`` (log2 of the cycles to spin, 4 to 30) makes them
sleep at once; waking them costs microseconds against GEMM blocks of tens of
milliseconds. Nothing computed changes, only who holds the cores.
"""

from __future__ import annotations

import os

SPIN_LOG2_CYCLES = "4"  # OpenBLAS's smallest: idle threads sleep at once


def apply() -> None:
    """Set what is not set already (a value the user chose is kept); child processes inherit it."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", SPIN_LOG2_CYCLES)
