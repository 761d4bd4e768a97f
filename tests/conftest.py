"""Shared fixtures: a tiny synthetic store + manifest, and a runner for the real `vadmil` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vadmil.data.annotations import load_manifest
from vadmil.data.synthetic import SyntheticSpec, generate

VADMIL = str(Path(sys.executable).with_name("vadmil"))
TINY_SPEC = dict(
    n_train_normal=10, n_train_abnormal=10, n_test_normal=5, n_test_abnormal=5, feature_dim=16, n_crops=2,
    min_snippets=6, max_snippets=40, anomaly_strength=4.0,
)  # fmt: skip
# The same tiny data set, as command-line overrides of dataset=synthetic, plus a short training.
TINY_OVERRIDES = [f"dataset.prepare.{k}={v}" for k, v in TINY_SPEC.items()] + [
    "trainer.max_steps=24",
    "trainer.enable_progress_bar=false",
    "data.batch_size=8",
]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    """(store, manifest) of a tiny synthetic data set; shared, so tests must not modify it."""
    root = tmp_path_factory.mktemp("tiny")
    store, manifest = root / "tiny.h5", root / "tiny.manifest.json"
    generate(store, manifest, SyntheticSpec(**TINY_SPEC))
    return store, manifest


@pytest.fixture()
def tiny_splits(tiny_data):
    """(store path, train annotations, test annotations)."""
    store, manifest = tiny_data
    return store, load_manifest(str(manifest), "train"), load_manifest(str(manifest), "test")


def run_vadmil(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `vadmil` console script; features and runs go under ``cwd``."""
    env = {**os.environ, "VADMIL_FEATURES_DIR": str(cwd / "features"), "VADMIL_RUNS_DIR": str(cwd / "runs")}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [VADMIL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
