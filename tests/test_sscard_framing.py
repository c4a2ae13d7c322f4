"""STX/LEN/CMD/DATA/BCC/ETX framing of the social-security reader: exact bytes, incremental
decoding, resynchronisation. Fuzzed with hypothesis."""
from __future__ import annotations

import pytest
from hypothesis import assume, given, settings, strategies as st

from drivers.sscard.framing import MAX_LEN, Frame, FrameDecoder, FrameTooLong, encode


def test_encode_card_present_query():
    # LEN 00 01, CMD 31, BCC = 00 ^ 01 ^ 31 = 30
    assert encode(0x31) == bytes.fromhex("02 0001 31 30 03")


def test_encode_apdu_select_ef05():
    # BCC = 00^08^33^00^A4^02^00^02^EF^05 = 75
    assert encode(0x33, bytes.fromhex("00A4020002EF05")) == \
        bytes.fromhex("02 0008 33 00A4020002EF05 75 03")


def test_encode_refuses_oversized_frame():
    assert len(encode(0x33, bytes(MAX_LEN - 1))) == MAX_LEN + 5   # LEN = MAX_LEN: the longest frame
    with pytest.raises(FrameTooLong, match=f"frame of {MAX_LEN + 1} bytes exceeds {MAX_LEN}"):
        encode(0x33, bytes(MAX_LEN))


def test_decode_byte_by_byte():
    wire = encode(0x31, b"\x01") + encode(0x33, bytes.fromhex("07 09") + b"A00000001" + b"\x90\x00")
    dec = FrameDecoder()
    out = []
    for b in wire:
        out += dec.feed(bytes((b,)))
    assert out == [Frame(0x31, b"\x01"), Frame(0x33, b"\x07\x09A00000001\x90\x00")]
    assert dec.pending == 0


def test_largest_frame_decodes():
    data = bytes(range(256)) * 2
    frame = encode(0x33, data[:MAX_LEN - 1])
    assert FrameDecoder().feed(frame) == [Frame(0x33, data[:MAX_LEN - 1])]


@pytest.mark.parametrize("length", [0, MAX_LEN + 1, 0xFFFF])
def test_length_out_of_range_resyncs_on_next_stx(length):
    good = encode(0x31, b"\x00")
    dec = FrameDecoder()
    header = bytes((0x02, length >> 8, length & 0xFF))
    # 513 = 02 01: that LEN_H is an STX too, so its candidate waits until the line goes quiet.
    assert dec.feed(header + good) + dec.resync() == [Frame(0x31, b"\x00")]
    assert dec.bad_length == 1 and dec.rejected == 1


def test_bad_bcc_and_bad_etx_are_dropped_and_counted():
    good = encode(0x34)
    bad_bcc = bytearray(encode(0x31, b"\x01"))
    bad_bcc[-2] ^= 0x40
    bad_etx = bytearray(encode(0x31, b"\x01"))
    bad_etx[-1] = 0x04
    for bad in (bad_bcc, bad_etx):
        dec = FrameDecoder()
        assert dec.feed(bytes(bad) + good) == [Frame(0x34)]
        assert (dec.bad_checksum, dec.frames) == (1, 1)
    dec = FrameDecoder()
    assert dec.feed(bytes(bad_bcc) + bytes(bad_etx) + good) == [Frame(0x34)]
    assert (dec.bad_checksum, dec.rejected - dec.bad_length, dec.frames) == (2, 2, 1)


def test_garbage_before_frame_is_skipped_and_counted():
    dec = FrameDecoder()
    assert dec.feed(b"\xff\x00\x13" + encode(0x31, b"\x01")) == [Frame(0x31, b"\x01")]
    assert dec.discarded_bytes == 3


def test_resync_salvages_frame_hidden_behind_corrupted_length():
    # A header claiming 300 bytes swallows the real answer; the line then goes quiet.
    answer = encode(0x33, b"\x90\x00")
    dec = FrameDecoder()
    assert dec.feed(b"\x02\x01\x2c" + answer) == []
    assert dec.resync() == [Frame(0x33, b"\x90\x00")]
    assert dec.pending == 0


def test_sync_after_timeout_mid_frame():
    dec = FrameDecoder()
    partial = encode(0x33, b"\x61\x10")[:4]
    assert dec.feed(partial) == []
    assert dec.resync() == []
    assert dec.resyncs >= 1
    assert dec.feed(encode(0x31, b"\x00")) == [Frame(0x31, b"\x00")]


# --- fuzzing ---------------------------------------------------------------------------------

def _xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


def frame_at(stream: bytes, i: int) -> Frame | None:
    """The frame the bytes at ``i`` spell, read straight from the spec, if they spell one."""
    if stream[i] != 0x02 or i + 3 > len(stream):
        return None
    length = int.from_bytes(stream[i + 1:i + 3], "big")
    end = i + 3 + length
    if not 1 <= length <= MAX_LEN or end + 2 > len(stream):
        return None
    if stream[end] != _xor(stream[i + 1:end]) or stream[end + 1] != 0x03:
        return None
    return Frame(stream[i + 3], bytes(stream[i + 4:end]))


def reference_scan(stream: bytes) -> tuple[list[Frame], dict[str, int]]:
    """The spec read literally over a complete stream: at each byte, a frame if the bytes
    there are one, else move on one byte. An incremental decoder that is later told the line
    went quiet (resync) must yield exactly this, however the stream was chunked — frames and
    counters: each byte passed over is garbage (not an STX) or an STX that failed for one
    reason, or that the stream ended under (the decoder waits for it, then drops it by resync)."""
    out, i = [], 0
    counts = dict.fromkeys(COUNTERS, 0)
    while i < len(stream):
        frame = frame_at(stream, i)
        if frame is not None:
            out.append(frame)
            counts["frames"] += 1
            i += len(frame.data) + 6
            continue
        if stream[i] != 0x02:
            counts["discarded_bytes"] += 1
        else:
            length = int.from_bytes(stream[i + 1:i + 3], "big")
            end = i + 3 + length
            if i + 3 > len(stream):
                counts["resyncs"] += 1
            elif not 1 <= length <= MAX_LEN:
                counts["bad_length"] += 1
            elif end + 2 > len(stream):
                counts["resyncs"] += 1
            else:  # a BCC or an ETX that does not match
                counts["bad_checksum"] += 1
        i += 1
    return out, counts


COUNTERS = ("frames", "discarded_bytes", "bad_length", "bad_checksum", "resyncs")


def counters(dec: FrameDecoder) -> dict[str, int]:
    return {name: getattr(dec, name) for name in COUNTERS}


def decode_chunked(stream: bytes, cuts: list[int]) -> tuple[list[Frame], FrameDecoder]:
    dec = FrameDecoder()
    out, pos = [], 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        out += dec.feed(stream[pos:cut])
        pos = max(pos, cut)
    return out + dec.resync(), dec


frames_st = st.lists(st.builds(Frame, st.integers(0, 255), st.binary(max_size=40)), max_size=6)
cuts_st = st.lists(st.integers(0, 10_000), max_size=30)
noise_st = st.binary(max_size=12)


@given(frames=frames_st, noise=st.lists(noise_st.map(lambda b: b.replace(b"\x02", b"")),
                                         min_size=7, max_size=7), cuts=cuts_st)
def test_any_chunking_and_noise_without_stx_yield_exactly_the_frames(frames, noise, cuts):
    stream = noise[-1] + b"".join(n + encode(f.cmd, f.data) for f, n in zip(frames, noise))
    out, dec = decode_chunked(stream, cuts)
    assert out == frames
    assert dec.pending == 0


def _damaged(frame: Frame, at: int, flip: int) -> bytes:
    wire = bytearray(encode(frame.cmd, frame.data))
    wire[at % len(wire)] ^= flip
    return bytes(wire)


# Random bytes alone rarely hold an STX whose LEN fits the bytes after it: mix in what a line
# really carries — frames, frames hit by one bad byte, bare headers with any LEN, lone STXs.
soup_part = st.one_of(
    st.binary(max_size=20),
    st.builds(lambda f: encode(f.cmd, f.data), st.builds(Frame, st.integers(0, 255), st.binary(max_size=20))),
    st.builds(_damaged, st.builds(Frame, st.integers(0, 255), st.binary(max_size=20)),
              st.integers(0, 100), st.integers(1, 255)),
    st.builds(lambda n: bytes((0x02,)) + n.to_bytes(2, "big"), st.sampled_from([0, 1, 2, 30, MAX_LEN, MAX_LEN + 1])),
    st.just(b"\x02"),
)


@given(soup=st.one_of(st.binary(max_size=300), st.lists(soup_part, max_size=12).map(b"".join)), cuts=cuts_st)
@settings(max_examples=300)
def test_any_byte_soup_decodes_like_the_spec_reading(soup, cuts):
    out, dec = decode_chunked(soup, cuts)
    assert (out, counters(dec)) == reference_scan(soup)
    assert dec.pending == 0


@st.composite
def damaged_streams(draw):
    """Frames with garbage (STX included) between them and one frame hit by one bad byte.
    Returns the stream, the undamaged frames and where they start."""
    frames = draw(st.lists(st.builds(Frame, st.integers(0, 255), st.binary(max_size=40)),
                           min_size=1, max_size=6))
    hit = draw(st.integers(0, len(frames) - 1))
    stream, sent, starts = bytearray(), [], []
    for i, f in enumerate(frames):
        stream += draw(st.one_of(noise_st, st.just(b"\x02"), st.just(b"\x02\x01")))
        wire = bytearray(encode(f.cmd, f.data))
        if i == hit:
            wire[draw(st.integers(0, len(wire) - 1))] ^= draw(st.integers(1, 255))
        else:
            sent.append(f)
            starts.append(len(stream))
        stream += wire
    return bytes(stream), sent, starts


@given(damaged=damaged_streams(), cuts=cuts_st)
@settings(max_examples=300)
def test_garbage_and_one_corrupted_byte_lose_only_the_damaged_frame(damaged, cuts):
    stream, sent, starts = damaged
    out, dec = decode_chunked(stream, cuts)
    assert (out, counters(dec)) == reference_scan(stream)
    # An 8-bit BCC plus ETX is a 16-bit check: now and then the damage or the garbage does
    # spell a well-formed frame, which no decoder can refuse. Wherever the stream holds no
    # such accidental frame, the decoder yields the undamaged frames, all of them, and only them.
    assume(all(frame_at(stream, i) is None for i in range(len(stream)) if i not in starts))
    assert out == sent
