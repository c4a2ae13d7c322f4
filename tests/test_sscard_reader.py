"""The social-security card driver that ships, against the virtual reader over real
pseudo-terminals (pyserial) and over socket:// — every test runs on both — and the APDU
layer against the virtual card directly."""
from __future__ import annotations

import threading
from datetime import date

import pytest

from drivers.cards import CardRead, CardRemoved, CardUnreadable, ReaderError
from drivers.serial_link import LinkDown
from drivers.sscard import card as sscard
from drivers.sscard.protocol import CardMute, ReaderNotResponding
from drivers.sscard.reader import SsCardReader
from sim.serial_endpoint import SerialEndpoint
from sim.sscard_reader import VirtualSsCard, VirtualSsReader
from waiting import wait_for

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def with_check(first17: str) -> str:
    """GB 11643 check character, computed here from the spec, not by the driver's module."""
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, WEIGHTS)) % 11]


LI = VirtualSsCard(card_number="D12345678", ss_number=with_check("37010219900307123"),
                   name="李晓明", expiry="20351130")


pytestmark = pytest.mark.usefixtures("no_leaked_threads")


@pytest.fixture(params=["pty", "tcp"])
def kind(request):
    return request.param


@pytest.fixture
def rig(kind):
    sim = VirtualSsReader()
    with SerialEndpoint(sim, kind=kind) as ep:
        reader = SsCardReader(ep.url, timeout=0.2, retries=2, poll_interval=0.02)
        try:
            yield sim, ep, reader
        finally:
            reader.close()


def expect_li(read: CardRead | None) -> None:
    assert read == CardRead(kind="ss_card", name="李晓明", id_number=LI.ss_number, sex="男",
                            birth_date="1990-03-07", valid_to="2035-11-30",
                            extra={"card_number": "D12345678"})


def test_reads_a_presented_card_once_per_insertion(rig):
    sim, _, reader = rig
    assert reader.poll(0.1) is None
    sim.card = LI
    expect_li(reader.poll(1.0))
    assert reader.poll(0.1) is None          # still in the reader: not presented again
    sim.card = None
    assert reader.poll(0.1) is None
    sim.card = LI
    expect_li(reader.poll(1.0))
    assert sim.commands[-1] == 0x34           # powered off after the read
    assert reader.protocol.timeouts == 0


def test_x_check_character_and_padded_gbk_name(rig):
    sim, _, reader = rig
    ssn = with_check("11010519491231002")
    assert ssn.endswith("X")
    sim.card = VirtualSsCard(ss_number=ssn, name="欧阳娜娜")
    read = reader.poll(1.0)
    assert (read.name, read.id_number, read.sex) == ("欧阳娜娜", ssn, "女")


def test_garbage_on_the_line(rig):
    sim, ep, reader = rig
    ep.faults.garbage = b"\xff\x00\x13\x03\x7f"
    sim.card = LI
    expect_li(reader.poll(1.0))
    assert reader.protocol.decoder.discarded_bytes >= 5


def test_garbage_with_a_false_header_swallowing_the_answer(rig):
    # "02 01 2C" announces 300 bytes: the real answer is only found when the line goes quiet.
    sim, ep, reader = rig
    sim.card = LI
    ep.faults.garbage = b"\x02\x01\x2c"
    assert reader.protocol.card_present() is True
    assert reader.protocol.decoder.resyncs >= 1


def test_answers_split_into_single_bytes(rig):
    sim, ep, reader = rig
    ep.faults.chunk_size = 1
    ep.faults.chunk_delay = 0.001
    sim.card = LI
    expect_li(reader.poll(2.0))


def test_truncated_answer_is_retried(rig):
    sim, ep, reader = rig
    sim.card = LI
    ep.faults.truncate_next = 1
    expect_li(reader.poll(2.0))
    assert reader.protocol.timeouts == 1


def test_bad_bcc_is_retried(rig):
    sim, _, reader = rig
    sim.card = LI
    sim.bad_bcc_next = 2
    expect_li(reader.poll(2.0))
    assert reader.protocol.decoder.bad_checksum == 2
    assert reader.protocol.timeouts == 2


def test_frame_error_from_reader_is_retried(rig):
    sim, _, reader = rig
    sim.card = LI
    sim.frame_error_next = 1
    expect_li(reader.poll(1.0))
    assert reader.protocol.frame_errors == 1


def test_garbled_command_gets_frame_error_from_the_reader(rig):
    sim, ep, reader = rig
    reader.link.write(b"\x02\x00\x01\x31\x99\x03")  # bad BCC
    assert reader.poll(0.1) is None
    assert sim.bad_frames == 1


def test_late_answer_to_another_command_is_skipped(rig):
    sim, ep, reader = rig
    ep.faults.garbage = bytes.fromhex("02 0001 32 33 03")  # a well-formed power-on answer
    sim.card = LI
    expect_li(reader.poll(1.0))
    # Before each of the 10 answers: presence, power on, 7 APDUs, power off. For power on it
    # has the right CMD but no ATR in it.
    assert (reader.protocol.stale_frames, reader.protocol.bad_answers) == (9, 1)
    assert reader.protocol.timeouts == 0


class NonsensePresence(VirtualSsReader):
    def _answer(self, cmd: int, data: bytes) -> bytes:
        return self._frame(0x31, b"\x05") if cmd == 0x31 else super()._answer(cmd, data)


def test_meaningless_answer_is_retried_then_reported(kind):
    with SerialEndpoint(NonsensePresence(LI), kind=kind) as ep:
        reader = SsCardReader(ep.url, timeout=0.2, retries=2)
        with pytest.raises(ReaderNotResponding, match="command 31 after 3 tries"):
            reader.poll(0)
        reader.close()
    assert (reader.protocol.bad_answers, reader.protocol.timeouts) == (3, 3)


def test_card_removed_mid_read(rig):
    sim, _, reader = rig
    sim.card = LI
    sim.remove_after_apdus = 3
    with pytest.raises(CardRemoved):
        reader.poll(1.0)
    assert sim.card is None
    assert reader.poll(0.1) is None
    sim.card = LI
    expect_li(reader.poll(1.0))


def test_mute_card_is_reported_once(rig):
    sim, _, reader = rig
    sim.card = VirtualSsCard(mute=True)
    with pytest.raises(CardMute):
        reader.poll(1.0)
    assert reader.poll(0.1) is None      # same card still in: not reported again
    sim.card = None
    assert reader.poll(0.1) is None
    sim.card = LI
    expect_li(reader.poll(1.0))


def test_silent_reader_is_a_reader_problem_not_a_card_problem(rig):
    sim, ep, reader = rig
    sim.card = LI
    ep.faults.mute = True
    with pytest.raises(ReaderNotResponding) as e:
        reader.poll(1.0)
    assert isinstance(e.value, ReaderError)
    assert reader.protocol.timeouts == 3
    ep.faults.mute = False
    expect_li(reader.poll(1.0))


class SilentPowerOn(VirtualSsReader):
    """A reader that stops answering just after it found the card."""

    silent = 3

    def _answer(self, cmd: int, data: bytes) -> bytes:
        if cmd == 0x32 and self.silent:
            self.silent -= 1
            return b""
        return super()._answer(cmd, data)


def test_reader_silent_mid_read_reads_the_card_again_when_back(kind):
    sim = SilentPowerOn(LI)
    with SerialEndpoint(sim, kind=kind) as ep:
        reader = SsCardReader(ep.url, timeout=0.1, retries=2)
        with pytest.raises(ReaderNotResponding, match="command 32"):
            reader.poll(1.0)
        expect_li(reader.poll(1.0))   # the reader failed, not the card: not lost
        reader.close()


def test_unplug_and_replug(rig):
    sim, ep, reader = rig
    sim.card = LI
    expect_li(reader.poll(1.0))
    ep.unplug()
    with pytest.raises(LinkDown):
        reader.poll(0.1)
    sim.card = VirtualSsCard()  # swapped while the reader was away
    ep.replug()
    # Back online, whatever is in the reader is read afresh...
    assert poll_once_back(reader).extra["card_number"] == "A00000001"
    assert reader.link.opens == 2
    # ...once.
    assert reader.poll(0.1) is None


def poll_once_back(reader: SsCardReader, limit: float = 10.0) -> CardRead | None:
    """Poll through the link's reconnect backoff; the first poll the reader answers."""
    answers: list[CardRead | None] = []

    def answered() -> bool:
        try:
            answers.append(reader.poll(0.05))
        except LinkDown:
            return False
        return True

    wait_for(answered, "the reader back on the line", limit)
    return answers[0]


def test_missing_device_is_link_down_when_the_wait_ends():
    reader = SsCardReader("/nonexistent/ttySS0", poll_interval=0.02)
    with pytest.raises(LinkDown, match="cannot open"):
        reader.poll(0)
    with pytest.raises(LinkDown):
        reader.poll(0.1)
    reader.close()


def test_port_back_within_the_wait_is_no_error(kind):
    sim = VirtualSsReader(LI)
    with SerialEndpoint(sim, kind=kind) as ep:
        reader = SsCardReader(ep.url, timeout=0.2, poll_interval=0.02)
        expect_li(reader.poll(1.0))
        ep.unplug()
        with pytest.raises(LinkDown):
            reader.poll(0)
        replug = threading.Timer(0.3, ep.replug)
        replug.start()
        try:
            expect_li(reader.poll(10.0))  # the outage passes inside one poll
        finally:
            replug.join()
            reader.close()


# --- the APDU layer on the virtual card, no serial line ------------------------------------

def test_apdu_sequence_reads_all_four_records():
    card = VirtualSsCard(card_number="D12345678", ss_number=LI.ss_number, name="李晓明",
                         expiry="20351130")
    card.power_on()
    assert sscard.read_card(card) == sscard.SsCardData("D12345678", date(2035, 11, 30),
                                                   LI.ss_number, "李晓明")


def test_61xx_is_success_with_more():
    card = VirtualSsCard(chained=True)
    card.power_on()
    assert sscard.read_card(card).card_number == "A00000001"


def test_apdu_bytes_match_the_spec(mocker):
    card = VirtualSsCard()
    card.power_on()
    transmit = mocker.spy(card, "transmit")
    sscard.read_card(card)
    assert [c.args[0].hex(" ").upper() for c in transmit.call_args_list] == [
        "00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF",
        "00 A4 02 00 02 EF 05",
        "00 B2 07 00 0B",
        "00 B2 06 00 06",
        "00 A4 02 00 02 EF 06",
        "00 B2 08 00 14",
        "00 B2 09 00 20",
    ]


@pytest.mark.parametrize("refuse, sw, words", [
    ({"SSSE": 0x6A82}, 0x6A82, "select SSSE: SW 6A82 (file or application not found)"),
    ({"EF06": 0x6982}, 0x6982, "select EF06: SW 6982 (security status not satisfied)"),
    ({"09": 0x6A83}, 0x6A83, "read name: SW 6A83 (record not found)"),
    ({"07": 0x6C0B}, 0x6C0B, "read card number: SW 6C0B (wrong Le, card has 11 bytes)"),
])
def test_refusals_are_named(refuse, sw, words):
    card = VirtualSsCard(refuse=refuse)
    card.power_on()
    with pytest.raises(sscard.ApduError) as e:
        sscard.read_card(card)
    assert e.value.sw == sw
    assert str(e.value) == words
    assert isinstance(e.value, CardUnreadable)


@pytest.mark.parametrize("field, value, words", [
    ("ss_number", "370102199003071234", "GB 11643"),   # wrong check character
    ("ss_number", with_check("37010219901307123"), "GB 11643"),  # month 13
    ("expiry", "2030AB31", "not BCD"),
    ("expiry", "20300231", "not a calendar date"),
    ("card_number", "D1234567?", "9 ASCII"),
    ("name", " " * 4, "empty"),
])
def test_invalid_records_are_unreadable(field, value, words):
    card = VirtualSsCard(**{field: value})
    card.power_on()
    with pytest.raises(CardUnreadable, match=words):
        sscard.read_card(card)


def test_record_with_wrong_tag_or_length_is_unreadable():
    with pytest.raises(CardUnreadable, match="not tag 07"):
        sscard.parse_record("read card number", b"\x06\x09" + b"A" * 9, 0x07, 9)
    with pytest.raises(CardUnreadable, match="record length"):
        sscard.parse_record("read card number", b"\x07\x09" + b"A" * 8, 0x07, 9)


def test_name_that_is_not_gbk_is_unreadable():
    class BadName(VirtualSsCard):
        def records(self):
            r = super().records()
            r[0x06][0x09] = b"\xff\xff" + b" " * 28
            return r

    card = BadName()
    card.power_on()
    with pytest.raises(CardUnreadable, match="GBK"):
        sscard.read_card(card)


def test_bad_card_over_the_line_is_unreadable_and_not_repeated(rig):
    sim, _, reader = rig
    sim.card = VirtualSsCard(refuse={"EF05": 0x6A82})
    with pytest.raises(sscard.ApduError):
        reader.poll(1.0)
    assert reader.poll(0.1) is None
    cmds = sim.commands
    last_apdu = max(i for i, c in enumerate(cmds) if c == 0x33)
    assert cmds[last_apdu + 1] == 0x34    # powered off after the failure
