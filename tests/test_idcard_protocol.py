"""The SAM request/answer layer against a scripted line and a fake clock: every retry, timeout
and grace period exactly, without waiting for any of them."""
from __future__ import annotations

import pytest

from drivers.cards import ReaderError
from drivers.idcard.framing import PREAMBLE, encode
from drivers.idcard.protocol import (Answer, Command, SamNoAnswer, SamProtocol, SamProtocolError, Status,
                                     status_name)

H = bytes.fromhex
FIND = Command.FIND_CARD
OK, NO_CARD, SAM_CHK = H("000090"), H("000080"), H("000010")


class ScriptedLine:
    """What the SAM sends after each request: a list per request of byte chunks (delivered at
    once) and floats (that many seconds of silence). After its script, a request meets silence."""

    def __init__(self, *answers: list[bytes | float]):
        self.answers = list(answers)
        self.now = 0.0
        self.writes: list[bytes] = []
        self.resets = 0
        self._chunks: list[bytes | float] = []

    def clock(self) -> float:
        return self.now

    def reset_input(self) -> None:
        self.resets += 1

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self._chunks = list(self.answers.pop(0)) if self.answers else []

    def read(self, max_bytes: int, timeout: float) -> bytes:
        assert timeout > 0  # the protocol never asks for a read past its deadline
        while self._chunks and isinstance(self._chunks[0], float):
            quiet = self._chunks[0]
            if quiet > timeout:
                self._chunks[0] = quiet - timeout
                self.now += timeout
                return b""
            self._chunks.pop(0)
            self.now += quiet
            timeout -= quiet
            if timeout <= 0:
                return b""
        if self._chunks:
            chunk = self._chunks.pop(0)
            if len(chunk) > max_bytes:  # the rest waits for the next read, as on a real port
                self._chunks.insert(0, chunk[max_bytes:])
            return chunk[:max_bytes]
        self.now += timeout
        return b""


def sam(line: ScriptedLine, timeout: float = 0.5, retries: int = 2) -> SamProtocol:
    return SamProtocol(line, timeout=timeout, retries=retries, clock=line.clock)


def corrupted(payload: bytes) -> bytes:
    frame = bytearray(encode(payload))
    frame[-1] ^= 0x01
    return bytes(frame)


def test_an_answer_at_once():
    line = ScriptedLine([encode(H("00009F00000000"))])
    answer = sam(line).request(FIND)
    assert answer == Answer(Status.CARD_FOUND, bytes(4)) and answer.name == "CARD_FOUND"
    assert line.writes == [encode(FIND)] and line.resets == 1 and line.now == 0


def test_data_goes_after_the_command():
    line = ScriptedLine([encode(OK)])
    sam(line).request(Command.READ_ADDRESS, H("0102"))
    assert line.writes == [encode(H("30030102"))]


@pytest.mark.parametrize("payload, answer", [
    (H("000090"), Answer(0x90, b"")),        # SW1 SW2 SW3, no data: the shortest answer
    (H("00009101"), Answer(0x91, H("01"))),
    (H("0000FE"), Answer(0xFE, b"")),        # a status GA/T 467 does not name is still an answer
])
def test_answers_are_split_after_sw3(payload, answer):
    assert sam(ScriptedLine([encode(payload)])).request(FIND) == answer


@pytest.mark.parametrize("payload", [H("0000"), H("010090"), H("000190"), H("FFFF90")])
def test_a_well_framed_non_answer_is_a_protocol_error_not_retried(payload):
    line = ScriptedLine([encode(payload)], [encode(OK)])
    with pytest.raises(SamProtocolError, match=f"not a SAM answer: {payload.hex(' ')}$"):
        sam(line).request(FIND)
    assert len(line.writes) == 1


def test_protocol_error_shows_the_first_8_bytes():
    line = ScriptedLine([encode(H("01") + bytes(range(1, 12)))])
    with pytest.raises(SamProtocolError, match="not a SAM answer: 01 01 02 03 04 05 06 07$"):
        sam(line).request(FIND)


def test_silence_is_retried_then_no_answer_after_every_attempt():
    line = ScriptedLine()
    with pytest.raises(SamNoAnswer, match="^command 20 01: no answer after 3 attempts$"):
        sam(line, timeout=0.5, retries=2).request(FIND)
    assert line.writes == [encode(FIND)] * 3 and line.resets == 3
    assert line.now == pytest.approx(1.5)  # each attempt waits its whole timeout, no longer


def test_no_retries():
    line = ScriptedLine([], [encode(OK)])
    with pytest.raises(SamNoAnswer, match="after 1 attempts"):
        sam(line, retries=0).request(FIND)
    assert len(line.writes) == 1


def test_an_answer_longer_than_one_read():
    read = bytes([0, 0, 0x90]) + bytes(range(256)) * 9   # 2307 + 10 bytes on the line: one answer
    line = ScriptedLine([encode(read)])
    assert sam(line).request(Command.READ_TEXT_PHOTO).data == read[3:]


def test_no_attempt_at_all_is_no_answer():
    line = ScriptedLine([encode(OK)])
    with pytest.raises(SamNoAnswer, match="^command 20 01: no answer after 0 attempts$"):
        sam(line, retries=-1).request(FIND)
    assert line.writes == []


def test_answer_just_inside_the_timeout_and_one_after_it():
    line = ScriptedLine([0.49, encode(OK)])
    assert sam(line, retries=0).request(FIND).status == Status.OK
    line = ScriptedLine([0.5, encode(OK)], [0.2, encode(NO_CARD)])
    assert sam(line).request(FIND).status == Status.FIND_FAILED  # the first came too late
    assert line.now == pytest.approx(0.7)


def test_a_longer_timeout_for_one_request():
    line = ScriptedLine([1.2, encode(OK)])
    assert sam(line, timeout=0.5, retries=0).request(Command.READ_TEXT_PHOTO, timeout=1.5).status == Status.OK
    with pytest.raises(SamNoAnswer):
        sam(ScriptedLine([1.2, encode(OK)]), timeout=0.5, retries=0).request(Command.READ_TEXT_PHOTO)


def test_sam_checksum_error_is_asked_again():
    line = ScriptedLine([encode(SAM_CHK)], [encode(SAM_CHK)], [encode(OK)])
    assert sam(line).request(FIND).status == Status.OK
    assert len(line.writes) == 3 and line.now == 0


def test_sam_checksum_errors_to_the_end_are_named():
    line = ScriptedLine([encode(SAM_CHK)], [encode(SAM_CHK)], [encode(SAM_CHK)], [encode(OK)])
    with pytest.raises(SamNoAnswer, match="^command 20 01: SAM reports a checksum error after 3 attempts$"):
        sam(line).request(FIND)


def test_corrupted_answer_is_asked_again_after_the_grace_not_the_timeout():
    line = ScriptedLine([corrupted(OK)], [encode(NO_CARD)])
    assert sam(line).request(FIND).status == Status.FIND_FAILED
    assert len(line.writes) == 2
    assert line.now == pytest.approx(SamProtocol.REJECT_GRACE)


def test_good_frame_behind_a_corrupted_one_within_the_grace_is_taken():
    line = ScriptedLine([corrupted(OK), SamProtocol.REJECT_GRACE - 0.01, encode(NO_CARD)])
    assert sam(line).request(FIND).status == Status.FIND_FAILED
    assert len(line.writes) == 1
    line = ScriptedLine([corrupted(OK), SamProtocol.REJECT_GRACE + 0.01, encode(NO_CARD)], [encode(OK)])
    assert sam(line).request(FIND).status == Status.OK  # too late: asked again
    assert len(line.writes) == 2


def test_corrupted_answers_to_the_end_are_named():
    line = ScriptedLine([corrupted(OK)], [corrupted(OK)], [corrupted(OK)])
    proto = sam(line)
    with pytest.raises(SamNoAnswer, match="^command 20 01: corrupted answer after 3 attempts$") as e:
        proto.request(FIND)
    assert isinstance(e.value, ReaderError)   # a drivers.cards error, like every card protocol's
    assert line.now == pytest.approx(3 * SamProtocol.REJECT_GRACE)
    assert (proto.decoder.rejected, proto.decoder.frames) == (3, 0)


def test_grace_never_extends_the_timeout():
    # corrupted 0.01 s before the deadline: the attempt still ends at the deadline
    line = ScriptedLine([0.49, corrupted(OK)])
    with pytest.raises(SamNoAnswer):
        sam(line, retries=0).request(FIND)
    assert line.now == pytest.approx(0.5)


def test_silence_mid_frame_gives_up_its_start_and_keeps_a_whole_frame_behind_it():
    truncated = encode(OK + bytes(20))[:12]  # declares 24 bytes: would swallow the next frame
    line = ScriptedLine([truncated + encode(NO_CARD)])
    assert sam(line).request(FIND).status == Status.FIND_FAILED
    assert len(line.writes) == 1 and line.now == pytest.approx(0.5)


def test_silence_mid_frame_with_nothing_behind_it_is_no_answer():
    line = ScriptedLine([encode(OK)[:6]], [encode(OK)[:6]], [encode(OK)[:6]])
    with pytest.raises(SamNoAnswer, match="no answer after 3 attempts"):
        sam(line).request(FIND)


def test_leftovers_of_one_attempt_never_join_the_next():
    # Attempt 1 ends on the start of a preamble; attempt 2 brings the rest of a stale frame.
    # Spliced together they would be a good "no card" frame; each attempt starts afresh.
    stale = encode(NO_CARD)
    line = ScriptedLine([encode(OK + bytes(20))[:10] + PREAMBLE[:3]], [stale[3:], encode(OK)])
    assert sam(line).request(FIND).status == Status.OK


def test_status_names():
    assert (status_name(0x90), status_name(0x80), status_name(0x10)) == ("OK", "FIND_FAILED", "CHECKSUM_ERROR")
    assert status_name(0x00) == "UNKNOWN_STATUS_00" and status_name(0xFE) == "UNKNOWN_STATUS_FE"
