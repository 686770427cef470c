"""A small thread pool that runs the per-chunk kernels on several cores.

NumPy releases the GIL inside BLAS calls and most array loops, so chunks can run on
plain threads. While a pass runs, BLAS is limited to one thread: the pool supplies the
parallelism, so the threads do not oversubscribe the cores. The limit also makes every
chunk's matrix product run the same single-threaded code path whatever the pool size,
so results do not depend on the number of threads.

The number of threads is the number of usable cores, unless ``SOFTKM_NUM_THREADS``
or ``set_num_threads`` sets another count.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_THREAD_PREFIX = "softkm-pool"
_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_threads = 0
_requested_threads: int | None = None
# Invalid SOFTKM_NUM_THREADS values already warned about, so that each is reported once.
_warned_values: set[str] = set()
_controller = None
_blas_limit = None
_blas_users = 0


def default_num_threads() -> int:
    """Return the thread count from ``SOFTKM_NUM_THREADS``, else the usable cores."""
    value = os.environ.get("SOFTKM_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) >= 1:
        return int(value)
    if value and value not in _warned_values:
        _warned_values.add(value)
        from softkm.errors import SoftkmWarning

        warnings.warn(
            f"SOFTKM_NUM_THREADS={value!r} is not a positive integer, so every usable core is used; "
            "set it to a thread count such as 2, or unset it",
            SoftkmWarning,
            stacklevel=2,
        )
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not every platform has sched_getaffinity
        return max(1, os.cpu_count() or 1)


def get_num_threads() -> int:
    """Return the number of threads the next pass will use."""
    return _requested_threads if _requested_threads is not None else default_num_threads()


def set_num_threads(n_threads: int | None) -> None:
    """Set the number of threads for later passes; None restores the default."""
    global _requested_threads
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}")
    _requested_threads = n_threads


def parallel_map(function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
    """Apply ``function`` to every item and yield the results in the items' order.

    BLAS runs on one thread until the iterator is exhausted or closed. At most twice
    as many items as threads are in flight, so the results waiting to be consumed stay
    few. With one thread, the items are processed in the calling thread.
    """
    n_threads = get_num_threads()
    if threading.current_thread().name.startswith(_THREAD_PREFIX):
        # Called from a kernel already running on the pool: waiting for the pool's own
        # threads from one of them could deadlock, so the items run here instead.
        n_threads = 1
    with single_threaded_blas():
        if n_threads <= 1:
            for item in items:
                yield function(item)
            return

        executor = _get_executor(n_threads)
        pending: deque[Future] = deque()
        try:
            for item in items:
                pending.append(executor.submit(function, item))
                if len(pending) >= 2 * n_threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            # A kernel that is still running may write into arrays the caller is
            # about to reuse, so wait for every started item before returning.
            for future in pending:
                if not future.cancelled():
                    future.exception()


def _get_executor(n_threads: int) -> ThreadPoolExecutor:
    global _executor, _executor_threads
    with _lock:
        if _executor is None or _executor_threads != n_threads:
            if _executor is not None:
                _executor.shutdown(wait=True)
            _executor = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix=_THREAD_PREFIX)
            _executor_threads = n_threads
        return _executor


@contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread for the duration of the block (or of a decorated call).

    The limit is process-wide, so nested or concurrent blocks share it: the first one
    in sets it and the last one out restores the previous thread counts. The engine
    keeps it for a whole fit, not only during passes: after a multithreaded call,
    OpenBLAS's own threads keep spinning for a while, on the cores the pool needs.
    """
    global _controller, _blas_limit, _blas_users
    with _lock:
        if _controller is None:
            # Imported here: threadpoolctl inspects the loaded libraries, which is
            # only worth doing once the engine runs.
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        if _blas_users == 0:
            _blas_limit = _controller.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None
