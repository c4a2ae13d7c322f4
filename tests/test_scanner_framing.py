"""A serial scan engine's lines, codes and repeats (devices.md §6): exact rules, every limit on
both sides, and the framing fuzzed byte by byte with hypothesis."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from drivers.scanner.framing import MAX_LINE, SUFFIXES, LineDecoder
from drivers.scanner.protocol import MAX_TRACKED, REPEAT_WINDOW, LineParser, RepeatFold, decode

CODE = "SDHC1:ABC+12/XYZ"


def feed_bytewise(dec: LineDecoder, data: bytes) -> list[bytes]:
    out = []
    for b in data:
        out += dec.feed(bytes((b,)))
    return out


@pytest.mark.parametrize("name", ["cr", "lf", "crlf"])
def test_each_suffix_ends_a_line_even_split_byte_by_byte(name):
    suffix = SUFFIXES[name]
    dec = LineDecoder(suffix)
    assert feed_bytewise(dec, b"A1" + suffix + b"B2" + suffix + b"C3") == [b"A1", b"B2"]
    assert dec.pending == 2 and dec.lines == 2


def test_crlf_needs_both_bytes():
    dec = LineDecoder(b"\r\n")
    assert dec.feed(b"A\rB\r") == []                 # a lone CR is not the end
    assert dec.feed(b"\n") == [b"A\rB"]


def test_unknown_suffix_is_refused():
    with pytest.raises(ValueError, match="suffix must be CR, LF or CR LF"):
        LineDecoder(b"\t")


@pytest.mark.parametrize("name", ["cr", "crlf"])
def test_line_of_max_length_passes_one_more_is_garbage_up_to_the_next_suffix(name):
    suffix = SUFFIXES[name]
    dec = LineDecoder(suffix)
    longest = b"x" * MAX_LINE
    assert dec.feed(longest + suffix) == [longest]
    # one byte over, arriving in pieces: dropped whole, without holding it, and the next line read
    assert feed_bytewise(dec, longest + b"y") == []
    assert dec.pending <= 1 and dec.long_lines == 1
    assert dec.feed(b"more garbage" * 400) == [] and dec.pending <= 1
    assert dec.feed(suffix + b"next" + suffix) == [b"next"]
    assert (dec.long_lines, dec.lines) == (1, 2)


def test_over_long_crlf_line_ending_between_reads():
    dec = LineDecoder(b"\r\n")
    assert dec.in_line is False
    assert dec.feed(b"y" * (MAX_LINE + 5) + b"\r") == [] and dec.pending == 1  # the CR may start the suffix
    assert dec.discarded_bytes == MAX_LINE + 5 and dec.in_line is True
    assert dec.feed(b"\nnext\r\n") == [b"next"]
    assert (dec.long_lines, dec.discarded_bytes, dec.in_line) == (1, MAX_LINE + 7, False)
    # exactly the bound, its CR and LF split: a line, not garbage
    assert dec.feed(b"x" * MAX_LINE + b"\r") == [] and dec.pending == MAX_LINE + 1
    assert dec.feed(b"\n") == [b"x" * MAX_LINE] and dec.long_lines == 1


def test_a_lone_cr_at_the_bound_is_content_with_an_lf_suffix():
    dec = LineDecoder(b"\n")
    assert dec.feed(b"x" * MAX_LINE + b"\r") == [] and dec.long_lines == 1  # MAX_LINE + 1 bytes of line
    assert dec.feed(b"\n") == []
    assert dec.feed(b"ok\n") == [b"ok"]


def test_streamed_over_long_lines_are_counted_once_each_with_every_byte():
    dec = LineDecoder(b"\r")
    for n in (1, 2):
        assert dec.feed(b"y" * (MAX_LINE + 1)) == [] and dec.feed(b"y" * 100) == []  # no suffix yet
        assert dec.long_lines == n and dec.pending == 0
        assert dec.feed(b"z\r") == []
        assert dec.discarded_bytes == n * (MAX_LINE + 103)


def test_counters_count_each():
    dec = LineDecoder(b"\r")
    for n in (1, 2):
        dec.feed(b"y" * (MAX_LINE + 1) + b"\r")
        assert dec.long_lines == n and dec.discarded_bytes == n * (MAX_LINE + 2) and dec.in_line is False
    dec.feed(b"part")
    dec.resync()
    dec.feed(b"more")
    dec.resync()
    assert dec.resyncs == 2 and dec.discarded_bytes == 2 * (MAX_LINE + 2) + 8
    dec.resync()                                     # nothing in hand: nothing counted
    assert dec.resyncs == 2 and dec.in_line is False


def test_over_long_line_in_one_chunk_is_dropped():
    dec = LineDecoder(b"\r")
    assert dec.feed(b"y" * (MAX_LINE + 1) + b"\rok\r") == [b"ok"]
    assert dec.long_lines == 1 and dec.discarded_bytes == MAX_LINE + 2


def test_resync_drops_a_partial_line_and_ends_skipping():
    dec = LineDecoder(b"\r")
    dec.feed(b"half a co")
    dec.resync()
    assert dec.feed(b"DE\r") == [b"DE"] and dec.resyncs == 1
    dec.feed(b"z" * (MAX_LINE + 5))
    assert dec.in_line
    dec.resync()                                     # the over-long noise ended in silence
    assert not dec.in_line and dec.feed(b"OK\r") == [b"OK"]


# --- line -> code -----------------------------------------------------------------------------

def test_plain_code_and_spaces_around_it():
    p = LineParser()
    assert p.code(CODE) == CODE
    assert p.code(f"  {CODE} ") == CODE
    assert p.code("") is None and p.code("   ") is None
    assert (p.codes, p.garbage) == (2, 1)            # blank: garbage; empty: nothing at all


def test_noise_before_a_code_is_skipped_without_a_prefix():
    p = LineParser()
    assert p.code(decode(b"\xff\x13\x00" + CODE.encode())) == CODE
    assert p.code(decode(b"\n" + CODE.encode())) == CODE   # CR LF engine, CR terminal
    assert p.noisy == 2
    assert p.code(decode(CODE.encode() + b"\x07")) is None  # noise at the end: nothing clean left
    assert p.garbage == 1


def test_utf8_code_is_kept_and_invalid_bytes_are_noise():
    p = LineParser()
    assert p.code(decode("通行码-42".encode())) == "通行码-42"
    assert p.code(decode("通行码".encode()[:-1] + b"42")) == "42"


def test_prefix_banner_and_garbage():
    p = LineParser("]Q1")
    assert p.code("]Q1" + CODE) == CODE
    assert p.code("NLS-EM20 V2.3.1 boot ok") is None and p.banners == 1
    assert p.code(decode(b"\xfe\x00]Q1" + CODE.encode())) == CODE and p.noisy == 1
    assert p.code(decode(b"]Q1SDH\x00]Q1" + CODE.encode())) == CODE     # a broken try, then the code
    assert p.code(decode(b"]Q1SDHC\x00garbled")) is None and p.garbage == 1
    assert p.code("]Q1") is None and p.banners == 2  # the prefix alone says nothing
    assert p.code("x]Q1" + CODE + "]Q1") == CODE + "]Q1"  # the prefix inside a code stays in it


def test_noise_of_one_character_overlapping_prefixes_and_counts():
    p = LineParser("]Q1")
    assert p.code("x]Q1" + CODE) == CODE and p.noisy == 1       # one character of noise before it
    assert p.code("]Q1" + CODE) == CODE and p.noisy == 1        # none
    assert p.code("X") is None and p.banners == 1                # a one-letter banner is a banner
    assert p.code("]Q1\tCODE") is None and p.code("\x00") is None
    assert p.garbage == 2                                        # a tab is noise, not a space to trim
    stx2 = LineParser("\x02\x02")
    assert stx2.code("\x02\x02\x02" + CODE) == CODE               # the prefix again, one character on


def test_control_character_prefix():
    p = LineParser("\x02")
    assert p.code("\x02" + CODE) == CODE
    assert p.code(CODE) is None and p.banners == 1


# --- repeats ----------------------------------------------------------------------------------

def test_repeats_within_the_window_are_one_presentation_and_extend_it():
    f = RepeatFold()
    assert f.is_new(CODE, 0.0)
    for t in (0.5, 1.0, 2.0, 3.0, 3.0 + REPEAT_WINDOW):   # held in view, repeated: exactly at the edge too
        assert not f.is_new(CODE, t)
    assert f.is_new(CODE, 3.0 + 2 * REPEAT_WINDOW + 0.001)  # gone longer than the window: new
    assert f.repeats == 5


def test_other_codes_are_tracked_apart():
    f = RepeatFold(1.0)
    assert f.is_new("A", 0.0) and f.is_new("B", 0.2)
    assert not f.is_new("A", 0.9) and not f.is_new("B", 1.1)
    assert f.is_new("A", 2.0)


def test_tracking_is_bounded():
    f = RepeatFold(10.0)
    for i in range(MAX_TRACKED):
        assert f.is_new(f"C{i}", i * 0.001)
    assert not f.is_new("C0", 0.1)                  # MAX_TRACKED codes: all still held
    f = RepeatFold(10.0)
    for i in range(MAX_TRACKED + 1):
        assert f.is_new(f"C{i}", i * 0.001)
    # one more: the oldest was forgotten to make room; the newest are still held
    assert f.is_new("C0", 0.1)
    assert not f.is_new(f"C{MAX_TRACKED}", 0.1)


# --- fuzzing ----------------------------------------------------------------------------------

cuts_st = st.lists(st.integers(0, 10_000), max_size=30)


def feed_cut(dec: LineDecoder, stream: bytes, cuts: list[int]) -> list[bytes]:
    out, pos = [], 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        out += dec.feed(stream[pos:cut])
        pos = max(pos, cut)
    return out


soup_part = st.one_of(st.binary(max_size=24), st.sampled_from([b"\r", b"\n", b"\r\n", b"\n\r"]))


@given(name=st.sampled_from(sorted(SUFFIXES)), soup=st.lists(soup_part, max_size=16).map(b"".join),
       cuts=cuts_st)
@settings(max_examples=300)
def test_any_byte_soup_any_chunking_splits_like_the_spec(name, soup, cuts):
    """Lines are what lies between suffixes, those over the bound dropped — however it arrives."""
    suffix, bound = SUFFIXES[name], 16
    dec = LineDecoder(suffix, max_line=bound)
    *complete, tail = soup.split(suffix)
    assert feed_cut(dec, soup, cuts) == [line for line in complete if len(line) <= bound]
    if len(tail) <= bound:
        assert dec.pending == len(tail)


code_st = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.sampled_from("健康码"),
                  min_size=1, max_size=40)
noise_st = st.binary(max_size=10).map(lambda b: bytes(c for c in b if c not in b"\r\n]"))
banner_st = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="]"),
                    min_size=1, max_size=30)


@given(name=st.sampled_from(sorted(SUFFIXES)),
       items=st.lists(st.tuples(st.sampled_from(["code", "banner", "garbage"]), code_st, noise_st, banner_st),
                      max_size=8),
       bytewise=st.booleans(), cuts=cuts_st)
@settings(max_examples=300)
def test_codes_come_through_noise_banners_and_any_chunking(name, items, bytewise, cuts):
    suffix, prefix = SUFFIXES[name], "]Q1"
    stream, expected = b"", []
    for what, code, noise, banner in items:
        if what == "code":
            stream += noise + (prefix + code).encode() + suffix
            expected.append(code.strip(" "))
        elif what == "banner":
            stream += banner.encode() + suffix
        else:
            stream += noise + b"\x00" + suffix
    dec, parser = LineDecoder(suffix), LineParser(prefix)
    lines = feed_bytewise(dec, stream) if bytewise else feed_cut(dec, stream, cuts)
    assert [c for c in (parser.code(decode(line)) for line in lines) if c is not None] == expected
    assert dec.pending == 0
