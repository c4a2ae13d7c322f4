import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivers.idcard.framing import MAX_LEN, PREAMBLE, FrameDecoder, encode

H = bytes.fromhex


# -- the spec's example frames, literally ---------------------------------------------------

@pytest.mark.parametrize("payload, wire", [
    (H("2001"), "AA AA AA 96 69 00 03 20 01 22"),      # find card
    (H("2002"), "AA AA AA 96 69 00 03 20 02 21"),      # select card
    (H("3001"), "AA AA AA 96 69 00 03 30 01 32"),      # read text + photo
    (H("000080"), "AA AA AA 96 69 00 04 00 00 80 84"),  # answer: no card
])
def test_spec_example_frames(payload, wire):
    assert encode(payload) == H(wire)
    assert FrameDecoder().feed(H(wire)) == [payload]


def test_longest_answers_have_the_spec_lengths():
    read = bytes([0, 0, 0x90]) + H("0100 0400") + bytes(256 + 1024)
    read_fp = bytes([0, 0, 0x90]) + H("0100 0400 0400") + bytes(256 + 1024 + 1024)
    assert encode(read)[5:7] == H("0508")
    assert encode(read_fp)[5:7] == H("090A")
    assert FrameDecoder().feed(encode(read_fp)) == [read_fp]
    with pytest.raises(ValueError, match=f"payload of {len(read_fp) + 1} bytes cannot be framed"):
        encode(read_fp + b"\x00")                     # LEN = MAX_LEN + 1
    assert encode(b"\x20\x01")[5:7] == H("0003")       # LEN = MIN_LEN: the shortest frame
    with pytest.raises(ValueError, match="payload of 1 bytes cannot be framed"):
        encode(b"\x20")                               # LEN = MIN_LEN - 1


def test_byte_by_byte():
    d = FrameDecoder()
    wire = encode(H("000090")) + encode(H("00009F00000000"))
    out = [f for b in wire for f in d.feed(bytes([b]))]
    assert out == [H("000090"), H("00009F00000000")]
    assert d.pending == 0 and d.frames == 2 and d.discarded_bytes == 0


def test_garbage_and_partial_preambles_before_a_frame():
    d = FrameDecoder()
    assert d.feed(H("00 FF AA AA 96 AA AA AA 96")) == []
    assert d.discarded_bytes == 5                              # AA AA AA 96 may start a preamble
    assert d.feed(H("69") + encode(H("000080"))[5:]) == [H("000080")]
    assert (d.frames, d.discarded_bytes, d.rejected) == (1, 5, 0)


def test_garbage_is_not_held():
    d = FrameDecoder()
    assert d.feed(H("00 FF 96 69 13")) == [] and d.pending == 0
    assert d.feed(H("AA")) == [] and d.pending == 1          # may be a preamble's start
    assert d.discarded_bytes == 5
    assert d.feed(H("13") + encode(H("000080"))) == [H("000080")] and d.discarded_bytes == 7


@pytest.mark.parametrize("k", range(1, len(PREAMBLE)))
def test_a_preamble_split_anywhere_is_found(k):
    wire = encode(H("000080"))
    d = FrameDecoder()
    assert d.feed(H("00") + wire[:k]) == [] and d.pending == k
    assert d.feed(wire[k:]) == [H("000080")] and d.pending == 0


def test_a_timeout_inside_a_preamble_costs_one_byte():
    # A stray AA, then a preamble cut by the timeout after its first two bytes: the resync
    # drops the stray byte only, and the frame whose preamble began one byte later is found.
    wire = encode(H("000080"))
    d = FrameDecoder()
    assert d.feed(H("AA") + wire[:2]) == [] and d.pending == 3
    assert d.resync() == [] and d.pending == 2 and d.resyncs == 1
    assert d.feed(wire[2:]) == [H("000080")]
    d = FrameDecoder()
    assert d.feed(wire[:3]) == [] and d.pending == 3
    assert d.resync() + d.resync() == [] and d.pending == 1 and d.resyncs == 2  # one byte each


def test_every_checksum_byte_position_matters():
    wire = encode(H("00009F01020304"))
    for at in range(5, len(wire)):              # LEN_H .. CHK
        for flip in (0x01, 0x80):
            bad = bytearray(wire)
            bad[at] ^= flip
            d = FrameDecoder()
            assert d.feed(bytes(bad)) + d.resync() == [], (at, flip)


def test_rejections_are_counted_one_by_one():
    bad_chk = bytearray(encode(H("000090")))
    bad_chk[-1] ^= 0x01
    d = FrameDecoder()
    frames = d.feed(bytes(bad_chk) + PREAMBLE + H("0000") + bytes(bad_chk) + encode(H("000080")))
    assert frames == [H("000080")] and d.rejected == 3
    assert (d.bad_checksum, d.bad_length, d.frames) == (2, 1, 1)
    assert d.feed(PREAMBLE + H("FFFF") + encode(H("000090"))) == [H("000090")]
    assert (d.bad_checksum, d.bad_length, d.frames) == (2, 2, 2)


def test_bad_checksum_is_dropped_and_the_next_frame_found():
    bad = bytearray(encode(H("000090")))
    bad[-1] ^= 0x01
    d = FrameDecoder()
    assert d.feed(bytes(bad) + encode(H("000080"))) == [H("000080")]
    assert d.rejected == 1


@pytest.mark.parametrize("length", [0x0000, 0x0001, 0x0002, MAX_LEN + 1, 0xFFFF])
def test_impossible_length_is_rejected_at_once(length):
    d = FrameDecoder()
    assert d.feed(PREAMBLE + length.to_bytes(2, "big")) == []   # header only: no waiting for a body
    assert d.rejected == 1 and d.pending == 0
    assert (d.bad_length, d.bad_checksum) == (1, 0)
    assert d.feed(encode(H("000090"))) == [H("000090")]


@pytest.mark.parametrize("length", [0x0003, MAX_LEN])
def test_possible_length_waits_for_its_body(length):
    d = FrameDecoder()
    assert d.feed(PREAMBLE + length.to_bytes(2, "big")) == []
    assert d.rejected == 0 and d.pending == 7


def test_plausible_but_wrong_length_costs_only_that_frame():
    # LEN corrupted from 00 04 to 00 09: the frame reaches into the next one, fails its
    # checksum, and the search resumes inside it and finds the next frame's preamble.
    bad = bytearray(encode(H("000090")))
    bad[6] = 0x09
    d = FrameDecoder()
    assert d.feed(bytes(bad) + encode(H("000080")) + encode(H("000081"))) == [H("000080"), H("000081")]


def test_truncated_frame_does_not_swallow_the_next_after_a_timeout():
    read_answer = encode(bytes([0, 0, 0x90]) + bytes(1284))
    d = FrameDecoder()
    # The module died 100 bytes into a 1295-byte answer; the next answer follows at once.
    assert d.feed(read_answer[:100] + encode(H("000080"))) == []
    assert d.resync() == [H("000080")]
    assert d.pending == 0 and d.resyncs == 1
    assert d.resync() == [] and d.resyncs == 1               # nothing pending: nothing dropped


def test_truncated_frame_is_recovered_from_even_without_a_timeout_once_enough_bytes_came():
    d = FrameDecoder()
    short = encode(H("00009F00000000"))[:9]  # declares 8 bytes, has 2
    frames = d.feed(short + encode(H("000080")) + encode(H("000081")))
    assert frames == [H("000080"), H("000081")]


def test_reset_forgets_a_partial_frame():
    d = FrameDecoder()
    d.feed(encode(H("000090"))[:8])
    d.reset()
    assert d.pending == 0
    assert d.feed(encode(H("000080"))) == [H("000080")]


# -- fuzz -------------------------------------------------------------------------------------

def _no_preamble(b: bytes) -> bool:
    return PREAMBLE not in b


PAYLOAD = st.one_of(st.binary(min_size=2, max_size=60), st.binary(min_size=1280, max_size=1290))
GARBAGE = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([PREAMBLE[:k] for k in range(1, 5)]),  # a preamble that never completes
)
SEGMENT = st.one_of(
    st.tuples(st.just("frame"), PAYLOAD),
    st.tuples(st.just("garbage"), GARBAGE),
    # one byte changed anywhere but LEN: the checksum or the preamble catches it
    st.tuples(st.just("corrupt"), PAYLOAD, st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("badlen"), PAYLOAD, st.sampled_from([0, 1, 2, MAX_LEN + 1, 0xFFFF])),
    # the sender stops mid-frame; the receiver times out before the next segment
    st.tuples(st.just("truncated"), PAYLOAD, st.integers(1, 10_000)),
)


def _build(segments):
    """-> pieces separated by timeouts, payloads that must come out, intended preamble offsets."""
    pieces, expected, starts = [bytearray()], [], set()
    offset = 0
    for seg in segments:
        kind = seg[0]
        if kind == "garbage":
            data = seg[1]
        else:
            frame = bytearray(encode(seg[1]))
            if kind == "frame":
                expected.append(seg[1])
            elif kind == "corrupt":
                at = [i for i in range(len(frame)) if i not in (5, 6)][seg[2] % (len(frame) - 2)]
                frame[at] ^= seg[3]
            elif kind == "badlen":
                frame[5:7] = seg[2].to_bytes(2, "big")
            elif kind == "truncated":
                frame = frame[:seg[2] % (len(frame) - 1) + 1]
            data = bytes(frame)
            if data.startswith(PREAMBLE):
                starts.add(offset)
        pieces[-1] += data
        offset += len(data)
        if kind == "truncated":
            pieces.append(bytearray())
    stream = b"".join(pieces)
    found = {i for i in range(len(stream)) if stream.startswith(PREAMBLE, i)}
    return pieces, expected, starts, found


def _feed_chunked(d: FrameDecoder, data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out += d.feed(data[i:i + n])
        i, k = i + n, k + 1
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(SEGMENT, max_size=12), st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_fuzz_recovers_every_good_frame_and_invents_none(segments, sizes):
    pieces, expected, starts, found = _build(segments)
    # Only the preambles we put there: a preamble made by chance inside random bytes would be
    # a frame start the sender really sent, which no receiver can tell apart.
    assume(found <= starts)
    d = FrameDecoder()
    out = []
    for piece in pieces:
        out += _feed_chunked(d, bytes(piece), sizes)
        out += d.resync()  # the timeout after a truncated frame (harmless elsewhere: nothing pending)
    assert out == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64), PAYLOAD.map(encode),
                          st.sampled_from([PREAMBLE, PREAMBLE + H("0004")])), max_size=16),
       st.lists(st.integers(1, 64), min_size=1, max_size=10), st.booleans())
def test_fuzz_anything_yields_only_frames_present_on_the_wire(parts, sizes, timeouts):
    stream = b"".join(parts)
    d = FrameDecoder()
    out = _feed_chunked(d, stream, sizes)
    if timeouts:
        while d.pending:
            out += d.resync()
    for payload in out:
        assert encode(payload) in stream
    assert all(len(p) + 1 <= MAX_LEN for p in out)
