"""Independent runs side by side on CPU: single-threaded, in forked worker processes.

mer's models are small: one training run's ops are too small to keep two cores busy (a training
stage ran 1.32x faster on 2 threads than on 1, not 2x: 41.2 vs 31.3 s; bench/PROFILE.md, round four),
so on CPU independent runs (a stage's seeds, the transfer stage's fine-tunings) run side by side,
one thread each. A run's result then depends neither on the number of workers nor on the
machine's cores (a few CPU reductions sum in an order that depends on the thread count).

:func:`forked_map` forks its workers: they inherit the caller's memory (packed splits, a corpus
plan) instead of reloading it, and start in milliseconds where a spawned worker re-imports torch
(3-5 s on the 2-core CPU). A forked child runs torch single-threaded, as DataLoader's forked
workers do.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def on_cpu(device: str) -> bool:
    """Whether a ``train.device`` setting trains on the CPU."""
    from mer.devices import resolve_device  # torch: not imported by the torch-free users (synthetic)

    return resolve_device(device, "train.device").type == "cpu"


@contextlib.contextmanager
def single_threaded(device: str) -> Iterator[None]:
    """Torch single-threaded within, on CPU (on a GPU nothing changes)."""
    import torch

    threads = torch.get_num_threads()
    if on_cpu(device):
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def forked_map(
    function: Callable[[int], T], count: int, workers: int, chunksize: int = 1
) -> Iterator[Iterator[T]]:
    """An iterator over ``function(i)`` for ``i`` in ``range(count)``, in order: computed in this
    process (``workers`` <= 1) or by ``workers`` processes forked on entry, which see this
    process's memory as it was then. ``function``'s exceptions are raised by the iterator.

    The workers fork before the caller starts a progress bar (whose monitor thread could hold
    tqdm's lock in the fork); a worker's changes to its memory stay in the worker.
    """
    if workers <= 1 or count <= 1 or "fork" not in multiprocessing.get_all_start_methods():  # Windows
        yield map(function, range(count))
        return
    with ProcessPoolExecutor(min(workers, count), mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool.map(function, range(count), chunksize=chunksize)  # submits every task: forks now
