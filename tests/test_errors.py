"""The wording shared by user errors."""

from __future__ import annotations

import pytest

from vadmil.errors import VadmilError, check_choice


def test_unknown_choices_share_one_wording():
    check_choice("crop mode", "center", ("center", "five"))  # a valid value passes
    with pytest.raises(VadmilError) as err:
        check_choice("crop mode", "six", ("center", "five"), where="clip.mp4")
    assert str(err.value) == "clip.mp4: unknown crop mode 'six'; choose one of center, five"
