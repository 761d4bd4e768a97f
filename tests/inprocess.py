"""Run a `vadmil` command in this process (no interpreter start-up): exit status and captured stderr."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from vadmil.cli import main


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_inprocess(*args: str, cwd: Path) -> Result:
    """``vadmil <args>`` as the console script runs it, from ``cwd``; Hydra's global state is reset after."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    old_cwd, old_argv = os.getcwd(), sys.argv
    env = {"VADMIL_FEATURES_DIR": str(cwd / "features"), "VADMIL_RUNS_DIR": str(cwd / "runs")}
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
    return Result(code, out.getvalue(), err.getvalue())
