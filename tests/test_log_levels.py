"""The level the Logs screen sets on Salut's loggers, and puts back."""

from __future__ import annotations

import logging

import pytest

from salut_tui.log_levels import LoggerLevels, level_number


def test_a_level_set_for_a_while_then_the_old_levels_again() -> None:
    names = ("salut_test_a", "salut_test_b")
    logging.getLogger("salut_test_a").setLevel(logging.WARNING)  # b: NOTSET, as configured
    levels = LoggerLevels(names)
    assert not levels.overridden and levels.effective() == "WARNING"
    levels.set(logging.DEBUG)
    levels.set(logging.INFO)  # a second set keeps the levels from before the first
    assert levels.overridden and levels.effective() == "INFO"
    assert logging.getLogger("salut_test_b").level == logging.INFO
    levels.restore()
    assert logging.getLogger("salut_test_a").level == logging.WARNING
    assert logging.getLogger("salut_test_b").level == logging.NOTSET
    assert not levels.overridden
    levels.restore()  # nothing to put back: no change
    assert logging.getLogger("salut_test_a").level == logging.WARNING


def test_level_names() -> None:
    assert level_number("debug") == logging.DEBUG and level_number("ERROR") == logging.ERROR
    with pytest.raises(ValueError, match="not a log level"):
        level_number("LOUD")
