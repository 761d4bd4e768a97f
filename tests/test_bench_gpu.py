"""The one-command GPU benchmark (bench/bench_gpu.py) runs its CPU path at tiny sizes: every part, real code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from .videos import encode

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_cpu_path_runs_every_part(tmp_path, capsys):
    video = encode(tmp_path / "clip.avi", n=40)
    results = _load("bench_gpu").main(["--device", "cpu", "--tiny", "--video", str(video)])
    printed = capsys.readouterr().out
    (extract,) = results["extract"]
    assert extract["stages"]["backbone alone"] > 0 and 0 < extract["pipeline_over_backbone"]
    assert "ratio pipeline / backbone alone" in printed
    assert "| fcn |" in results["heads"]  # bench_heads' table, from its subprocess
    assert set(results["rtfm"]["medians"]) == {"vadmil", "official"} and results["rtfm"]["ratio"] > 0
    (fcn, rtfm) = results["scoring"]
    for r in (fcn, rtfm):
        assert r["max_abs_diff"] < 1e-5  # length batching leaves the scores unchanged
        assert r["rows_after"] <= max(r["rows_before"], r["rows_after"])
    assert fcn["rows_after"] <= fcn["rows_before"]  # list-order batches of 32 pad more


def test_bench_gpu_refuses_full_sizes_without_a_gpu(capsys):
    import pytest

    with pytest.raises(SystemExit, match="no CUDA device"):
        _load("bench_gpu").main(["--device", "cpu"])


def test_ucf_lengths_match_the_test_split_size():
    lengths = _load("bench_scoring").ucf_lengths(290, 69_375)
    assert len(lengths) == 290 and abs(int(lengths.sum()) - 69_375) < 290 and np.all(lengths >= 1)
