"""One presentation at the camera (terminal/core/presentation.py): the gap, two sightings, blanks."""
from __future__ import annotations

from terminal.core.presentation import QrPresentations


def test_exactly_the_gap_is_still_the_same_presentation():
    t = QrPresentations(gap=1.0)
    assert t.observe(["SDHC1:A"], 10.0) == ["SDHC1:A"]
    assert t.observe(["SDHC1:A"], 11.0) == []          # ts - seen == gap: not gone yet
    assert t.observe([], 12.0) == [] and t.in_view == 1
    assert t.observe(["SDHC1:A"], 12.0 + 1e-6) == ["SDHC1:A"]  # just over the gap: a new presentation


def test_the_default_gap_is_one_and_a_half_seconds():
    t = QrPresentations()
    assert t.gap == 1.5
    assert t.observe(["SDHC1:A"], 0.0) == ["SDHC1:A"]
    assert t.observe(["SDHC1:A"], 1.5) == []
    assert t.observe(["SDHC1:A"], 3.01) == ["SDHC1:A"]


def test_the_code_leaves_view_after_the_gap():
    t = QrPresentations(gap=1.0)
    t.observe(["SDHC1:A", "x"], 0.0)
    assert t.in_view == 2
    t.observe([], 1.0)
    assert t.in_view == 2
    t.observe([], 1.001)
    assert t.in_view == 0


def test_a_late_frame_does_not_move_last_seen_back():
    """Frames handed on out of order: the later sighting is the one the gap counts from."""
    t = QrPresentations(gap=1.0)
    assert t.observe(["SDHC1:A"], 1.0) == ["SDHC1:A"]
    assert t.observe(["SDHC1:A"], 0.5) == []
    assert t.observe(["SDHC1:A"], 2.0) == []           # 1.0 after the latest sighting: same one


def test_other_codes_are_decided_on_the_second_sighting_only():
    t = QrPresentations(gap=1.0)
    assert t.observe(["2576"], 0.0) == []
    assert t.observe([], 0.5) == []                    # a frame without it does not reset the count
    assert t.observe(["2576"], 1.0) == ["2576"]        # second sighting, within the gap
    assert t.observe(["2576"], 1.5) == []              # third: already decided
    assert t.observe(["2576"], 3.0) == []              # gone and back: counting starts over
    assert t.observe(["2576"], 3.1) == ["2576"]


def test_only_the_sdhc_prefix_is_decided_at_once():
    t = QrPresentations(gap=1.0)
    assert t.observe(["SDHC1:A", "sdhc1:A", "XSDHC1:A", "SDH"], 0.0) == ["SDHC1:A"]
    assert t.observe(["sdhc1:A", "XSDHC1:A", "SDH"], 0.1) == ["sdhc1:A", "XSDHC1:A", "SDH"]


def test_duplicates_within_one_frame_are_one_sighting():
    t = QrPresentations(gap=1.0)
    assert t.observe(["2576", "2576", " 2576 "], 0.0) == []   # one frame, however many decoders read it
    assert t.observe(["SDHC1:A", "SDHC1:A"], 0.0) == ["SDHC1:A"]  # handed on once
    assert t.observe(["2576"], 0.1) == ["2576"]


def test_blank_texts_are_not_codes():
    t = QrPresentations(gap=1.0)
    assert t.observe(["", "   ", "\n"], 0.0) == []
    assert t.observe(["", " \t"], 0.1) == [] and t.in_view == 0


def test_surrounding_whitespace_is_not_part_of_the_code():
    t = QrPresentations(gap=1.0)
    assert t.observe([" SDHC1:A\n"], 0.0) == ["SDHC1:A"]
    assert t.observe(["SDHC1:A"], 0.1) == [] and t.in_view == 1
    assert t.observe(["  2576"], 0.2) == []
    assert t.observe(["2576 "], 0.3) == ["2576"]


def test_a_blank_text_does_not_hide_the_codes_after_it():
    t = QrPresentations(gap=1.0)
    assert t.observe(["", "SDHC1:A", " ", "SDHC1:B"], 0.0) == ["SDHC1:A", "SDHC1:B"]
