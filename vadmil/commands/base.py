"""Plumbing shared by the command entry points: where ``conf/`` is, and the guard that turns errors into one line."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from vadmil.errors import VadmilError
from vadmil.rundir import RunDir

log = logging.getLogger("vadmil")


def config_dir() -> str:
    """Absolute path of the Hydra config tree: ``conf/`` beside the package in a checkout (editable install),
    ``vadmil/conf`` inside an installed wheel."""
    package = Path(__file__).resolve().parents[1]  # vadmil/
    for candidate in (package.parent / "conf", package / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"vadmil's config tree (conf/) was not found beside {package}; reinstall vadmil")


def one_line(err: BaseException) -> str:
    """The user-facing message of an error, on one line (unwrapping Hydra's and DataLoader workers' wrappers)."""
    cause = err.__cause__
    if isinstance(err, InstantiationException) and isinstance(cause, VadmilError | OmegaConfBaseException):
        err = cause
    text = str(err)
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the original message
        text = text.rstrip().splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def flush_denormals() -> None:
    """Treat subnormal floats as zero on CPU. Near-zero activations and optimiser states turn subnormal during
    training, and x86 arithmetic on them is many times slower: a DTED training run took 9x longer without this."""
    import torch  # here, not at module level: this module is imported by light commands too

    torch.set_flush_denormal(True)


def guarded(task: Callable | None = None, *, record: bool = True) -> Callable:
    """Wrap a Hydra task: user errors become one line on stderr and exit status 2. With ``record`` the run dir
    gets ``error.txt`` (so a failed run never looks complete); in a multirun the sweep goes on with the next job.
    """
    if task is None:
        return functools.partial(guarded, record=record)

    @functools.wraps(task)
    def wrapper(cfg):
        try:
            flush_denormals()
            return task(cfg)
        except (VadmilError, InstantiationException, OmegaConfBaseException) as err:
            message, user_error = one_line(err), True
        except Exception as err:  # a bug: keep the traceback, but still mark the run as failed
            message, user_error = f"{type(err).__name__}: {one_line(err)}", False
            if not _multirun():
                _record_failure(message, record)
                raise
        _record_failure(message, record)
        print(f"vadmil: error: {message}", file=sys.stderr, flush=True)
        if _multirun():
            log.error("job failed, continuing the sweep: %s", message)
            return None
        sys.exit(2 if user_error else 1)

    return wrapper


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(message: str, record: bool) -> None:
    if record and HydraConfig.initialized():
        RunDir(HydraConfig.get().runtime.output_dir).record_error(message)
