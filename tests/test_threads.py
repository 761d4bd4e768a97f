"""`threads=auto|N` for extract and score: the backbone's torch threads beside the decoding workers."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from vadmil.commands.base import config_dir
from vadmil.errors import VadmilError
from vadmil.extract.threads import resolve_threads, set_threads


def test_auto_leaves_the_workers_their_cores():
    assert resolve_threads("auto", 2, cores=2) == 1
    assert resolve_threads("auto", 0, cores=2) == 2
    assert resolve_threads("auto", 8, cores=2) == 1
    assert resolve_threads(None, 1, cores=16) == 15
    assert resolve_threads(3, 2) == resolve_threads("3", 2) == 3


@pytest.mark.parametrize("bad", [0, -1, "two", "1.5", ""])
def test_bad_thread_counts_are_one_line_errors(bad):
    with pytest.raises(VadmilError, match="threads must be auto or a positive number"):
        resolve_threads(bad, 2)


def test_set_threads_applies_and_commands_default_to_auto():
    before = torch.get_num_threads()
    try:
        assert set_threads(1, 0) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with initialize_config_dir(config_dir(), version_base="1.3"):
        assert compose("extract", ["input=x", "output=y"]).threads == "auto"
        assert compose("score", ["video=x", "checkpoint=y"]).threads == "auto"
