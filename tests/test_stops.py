"""Stop strings on streamed text (pure; synthetic pieces, no model)."""

from __future__ import annotations

import pytest

from salut_tui.engine.stops import StopMatcher, normalize_stops


def run(stops: list[str], pieces: list[str]) -> tuple[list[str], bool, str]:
    """Feed pieces until a stop; returns what was emitted per piece, whether it stopped, flush."""
    matcher = StopMatcher(stops)
    emitted = []
    for piece in pieces:
        step = matcher.feed(piece)
        emitted.append(step.text)
        if step.stopped:
            return emitted, True, matcher.flush()
    return emitted, False, matcher.flush()


def test_no_stops_passes_text_through() -> None:
    emitted, stopped, rest = run([], ["Hello", " wor", "ld"])
    assert emitted == ["Hello", " wor", "ld"]
    assert not stopped and rest == ""


def test_stop_spanning_three_pieces_is_never_emitted() -> None:
    emitted, stopped, rest = run(["END"], ["one E", "N", "D two"])
    assert stopped
    assert "".join(emitted) == "one "
    assert emitted == ["one ", "", ""]  # "E" and "N" held back until resolved
    assert rest == ""


def test_held_back_prefix_released_when_it_turns_out_not_to_be_a_stop() -> None:
    emitted, stopped, rest = run(["END"], ["one E", "N", "X"])
    assert not stopped
    assert emitted == ["one ", "", "ENX"]
    assert rest == ""


def test_flush_returns_held_text_at_length_end() -> None:
    emitted, stopped, rest = run(["\n\nUser:"], ["answer", "\n\nUs"])
    assert not stopped
    assert "".join(emitted) == "answer"
    assert rest == "\n\nUs"


def test_earliest_of_several_stops_wins() -> None:
    emitted, stopped, _ = run(["world", "lo w"], ["hel", "lo world"])
    assert stopped
    assert "".join(emitted) == "hel"


def test_stop_inside_one_piece_cuts_the_rest() -> None:
    emitted, stopped, _ = run(["###"], ["abc###def"])
    assert stopped and emitted == ["abc"]


def test_overlapping_prefix_keeps_only_what_can_still_match() -> None:
    # After "xaa" the tail "aa" may still begin "aab", so only "x" is safe.
    matcher = StopMatcher(["aab"])
    assert matcher.feed("xaa").text == "x"
    assert matcher.pending == "aa"
    step = matcher.feed("ab")  # "aaab" contains "aab" at 1
    assert step.stopped and step.text == "a"


def test_after_stop_everything_is_dropped() -> None:
    matcher = StopMatcher(["."])
    assert matcher.feed("a.b").text == "a"
    assert matcher.feed("more").text == ""
    assert matcher.flush() == ""


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, ()), ("", ()), ("x", ("x",)), (["a", "", "b"], ("a", "b")), (("a",), ("a",))],
)
def test_normalize_stops(given, expected) -> None:
    assert normalize_stops(given) == expected
