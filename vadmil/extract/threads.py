"""How many torch threads the main process (the backbone) uses: ``threads=auto|N`` of `vadmil extract` and
`vadmil score`.

``auto`` gives the backbone the cores the decoding workers leave: ``max(1, cores - num_workers)``, where cores are
the CPUs this process may run on. Decoding workers each use one thread (PyTorch sets one torch thread in every
DataLoader worker), so on the 2-core machine of docs/benchmarks.md the default 2 workers leave the backbone 1
thread: measured side by side, a whole extraction took about half the wall time of torch's default (2 threads,
one per core, competing with the two workers). A number sets the count; it never changes the features' recipe.
"""

from __future__ import annotations

import os

import torch

from vadmil.errors import VadmilError


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(setting, num_workers: int, cores: int | None = None) -> int:
    """Torch threads for ``threads=setting`` beside ``num_workers`` decoding processes."""
    if setting is None or str(setting) == "auto":
        return max(1, (cores or available_cores()) - max(int(num_workers), 0))
    try:
        n = int(setting)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(setting).strip():
        raise VadmilError(f"threads must be auto or a positive number of threads, got {setting!r}")
    return n


def set_threads(setting, num_workers: int) -> int:
    """Apply :func:`resolve_threads` to this process (``torch.set_num_threads``); returns the count."""
    n = resolve_threads(setting, num_workers)
    torch.set_num_threads(n)
    return n
