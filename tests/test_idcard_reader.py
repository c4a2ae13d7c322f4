"""The shipping ID-card driver against the virtual SAM, over real ptys (pyserial) and socket://."""
import dataclasses
import datetime as dt
import gc
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.cards import CardRemoved, CardUnreadable, ReaderError
from drivers.idcard.framing import encode
from drivers.idcard.protocol import Command, SamProtocol, SamNoAnswer, Status, status_name
from drivers.idcard.card import NATIONS, IdCard, parse_text, split_read_answer
from drivers.idcard.reader import IdCardReader
from drivers.serial_link import LinkDown, SerialLink
from sim.idcard_sam import (SimCard, VirtualSam, foreign_card, hmt_permit_card,
                            resident_card)
from sim.serial_endpoint import SerialEndpoint
from waiting import wait_for

FIND, SELECT, READ = Command.FIND_CARD, Command.SELECT_CARD, Command.READ_TEXT_PHOTO


# -- parsing the text block -------------------------------------------------------------------

def test_resident_card_fields():
    card = parse_text(resident_card().text_block())
    assert card == IdCard(
        card_type="resident", name="张三", sex="男", birth_date=dt.date(1990, 1, 1),
        id_number="370102199001011231", valid_from=dt.date(2015, 1, 1),
        valid_to=dt.date(2035, 1, 1), nation="汉", address="山东省济南市历下区泉城路1号",
        authority="济南市公安局历下分局")


def test_no_expiry():
    card = parse_text(resident_card(valid_to="长期").text_block())
    assert card.valid_to is None
    assert card.to_card_read().valid_to == "长期"


@pytest.mark.parametrize("code", [f"{i:02d}" for i in range(1, 57)] + ["97", "98"])
def test_every_nation_code(code):
    assert parse_text(resident_card(nation=code).text_block()).nation == NATIONS[int(code)]


def test_nation_table_ends():
    assert (NATIONS[1], NATIONS[56], len(NATIONS)) == ("汉", "基诺", 58)


def test_hmt_residence_permit():
    card = parse_text(hmt_permit_card().text_block())
    assert (card.card_type, card.name, card.id_number, card.pass_number, card.issue_count,
            card.nation) == ("hmt_residence_permit", "陈大文", "810000198503150017",
                             "H12345678", 1, None)


def test_foreign_permanent_resident_card():
    card = parse_text(foreign_card().text_block())
    assert (card.card_type, card.name, card.english_name, card.id_number, card.nationality,
            card.birth_date, card.sex) == ("foreign_permanent_resident", "史密斯", "SMITH, JOHN",
                                           "USA110070070401", "USA", dt.date(1970, 7, 4), "男")
    assert parse_text(foreign_card(name="").text_block()).name == "SMITH, JOHN"


@pytest.mark.parametrize("card, why", [
    (resident_card(id_number="370102199001011234"), "check character"),
    (resident_card(birth="19900102"), "birth date differs"),
    (resident_card(sex="2"), "sex differs"),
    (resident_card(sex="5"), "sex code"),
    (resident_card(nation="57"), "nation"),
    (resident_card(nation="00"), "nation"),
    (resident_card(valid_from="20150230"), "not a date"),
    (resident_card(valid_to="20100101"), "before valid from"),
    (resident_card(valid_from="19800101"), "before the birth date"),
    (resident_card(name=""), "name is empty"),
    (resident_card(address=""), "address is empty"),
    (hmt_permit_card(issue_count="0A"), "issue count"),
    (hmt_permit_card(id_number="810000198503150012"), "check character"),
    (foreign_card(nationality="U1A"), "nationality"),
    (foreign_card(id_number="USA11007007040"), "15 letters"),
    (dataclasses.replace(resident_card(), card_type="Y"), "unsupported card type"),
])
def test_doubtful_cards_are_refused(card, why):
    with pytest.raises(CardUnreadable, match=why):
        parse_text(card.text_block())


@pytest.mark.parametrize("card, message, secret", [
    (resident_card(birth="19900231"), "birth date is not a date", "19900231"),
    (resident_card(birth="1990010X"), "birth date is not a date", "1990010X"),
    (resident_card(valid_from="20150230"), "valid from is not a date", "20150230"),
    (resident_card(valid_to="20351301"), "valid to is not a date", "20351301"),
    (resident_card(sex="7"), "unknown sex code", "'7'"),
    (resident_card(nation="57"), "unknown nation code", "57"),
    (hmt_permit_card(issue_count="0A"), "issue count is not a number", "0A"),
    (hmt_permit_card(birth="19850230"), "birth date is not a date", "19850230"),
    (foreign_card(nationality="U1A"), "nationality is not a 3-letter code", "U1A"),
    (foreign_card(birth="19700732"), "birth date is not a date", "19700732"),
])
def test_errors_name_the_field_never_its_value(card, message, secret):
    """The message is logged and shown: it must carry no personal field of the card."""
    with pytest.raises(CardUnreadable) as e:
        parse_text(card.text_block())
    assert str(e.value) == message and secret not in str(e.value)


def test_blocks_that_are_not_text_are_refused():
    with pytest.raises(CardUnreadable):
        parse_text(bytes(256))
    with pytest.raises(CardUnreadable, match="UCS-2"):
        parse_text(b"\x00\xD8" + resident_card().text_block()[2:])  # lone surrogate in the name
    with pytest.raises(CardUnreadable, match="256"):
        parse_text(resident_card().text_block()[:255])


def test_read_answer_loses_the_photo():
    card = resident_card()
    data = bytes.fromhex("0100 0400") + card.text_block() + card.photo
    assert split_read_answer(data) == card.text_block()
    parsed = parse_text(split_read_answer(data))
    assert not any(isinstance(getattr(parsed, f.name), bytes) for f in dataclasses.fields(parsed))
    for bad in (data[:-1], bytes.fromhex("0100 0401") + data[4:] + b"\x00",
                bytes.fromhex("0101 0400") + data[4:], b"\x01"):
        with pytest.raises(CardUnreadable):
            split_read_answer(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=256, max_size=256))
def test_random_blocks_never_crash(block):
    try:
        card = parse_text(block)
    except CardUnreadable:
        return
    assert card.valid_to is None or card.valid_to >= card.valid_from


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.integers(1, 255))
def test_corrupted_id_number_or_date_bytes_never_give_a_card_with_the_wrong_number(pos, delta):
    # Change one byte of the birth date, ID number, or validity: the result is refused or,
    # if still consistent, carries exactly what the block says (never a silently fixed number).
    block = bytearray(resident_card().text_block())
    offset = (36, 122, 188)[pos % 3] + pos % 16
    block[offset] ^= delta
    try:
        card = parse_text(bytes(block))
    except CardUnreadable:
        return
    assert card.id_number == bytes(block[122:158]).decode("utf-16-le")
    assert card.birth_date.strftime("%Y%m%d") == card.id_number[6:14]


def test_status_names_cover_the_spec():
    spec = {0x90, 0x91, 0x9F, 0x10, 0x11, 0x21, 0x23, 0x24, 0x31, 0x32, 0x33, 0x40, 0x41,
            0x47, 0x60, 0x66, 0x80, 0x81}
    assert {int(s) for s in Status} == spec
    assert status_name(0x41) == "READ_FAILED" and status_name(0x55) == "UNKNOWN_STATUS_55"


# -- the driver against the simulator, both transports -----------------------------------------

@pytest.fixture(params=["pty", "tcp"])
def rig(request):
    sam = VirtualSam(resident_card(), read_delay=0)
    with SerialEndpoint(sam, kind=request.param) as ep:
        reader = IdCardReader(ep.url, timeout=0.2, read_timeout=0.3, retries=2,
                              poll_interval=0.01, backoff_min=0.01, backoff_max=0.05)
        try:
            yield sam, ep, reader
        finally:
            reader.close()


def reads(sam):
    return sam.commands.count(READ)


def test_reads_a_card_once_per_presentation(rig):
    sam, _, reader = rig
    card = reader.poll(1)
    assert (card.kind, card.name, card.id_number) == ("id_card", "张三", "370102199001011231")
    assert sam.commands[:3] == [FIND, SELECT, READ]
    assert reader.poll(0.1) is None  # still lying there: same presentation
    assert reads(sam) == 1
    sam.card = None
    assert reader.poll(0.05) is None
    sam.card = resident_card(name="李四")
    assert reader.poll(1).name == "李四"
    assert reads(sam) == 2


def test_modules_that_stop_finding_a_read_card(rig):
    sam, _, reader = rig
    sam.halt_after_read = True
    assert reader.poll(1).name == "张三"
    assert reader.poll(0.1) is None
    sam.card = resident_card(name="李四")
    assert reader.poll(1).name == "李四"
    assert reads(sam) == 2


@pytest.mark.parametrize("card", [hmt_permit_card(), foreign_card()])
def test_other_card_types_over_the_wire(rig, card):
    sam, _, reader = rig
    sam.card = card
    read = reader.poll(1)
    assert read.name == card.name and read.id_number == card.id_number


def test_module_taking_its_time_to_read(rig):
    sam, _, reader = rig
    sam.read_delay = (0.05, 0.1)   # within read_timeout (0.3 s): one read, no retry
    assert reader.poll(1).name == "张三"
    assert reads(sam) == 1


def test_no_card(rig):
    sam, _, reader = rig
    sam.card = None
    assert reader.poll(0.1) is None
    assert set(sam.commands) == {FIND}


def test_garbage_before_every_answer(rig):
    sam, ep, reader = rig
    ep.faults.garbage = bytes.fromhex("00 FF AA AA 96 13 AA AA AA 96 69 FF FF 55")
    assert reader.poll(1).name == "张三"


@pytest.mark.parametrize("size", [1, 7, 64])
def test_answers_split_into_small_writes(rig, size):
    _, ep, reader = rig
    ep.faults.chunk_size = size
    ep.faults.chunk_delay = 0.0005 if size > 1 else 0
    assert reader.poll(2).name == "张三"


def test_corrupted_answer_is_asked_again(rig):
    sam, _, reader = rig
    sam.bad_checksum = 1  # the answer to find
    assert reader.poll(1).name == "张三"
    assert sam.commands[:4] == [FIND, FIND, SELECT, READ]


def test_corrupted_read_answer_is_asked_again(rig):
    sam, _, reader = rig
    reader.protocol.request(FIND)
    reader.protocol.request(SELECT)
    sam.bad_checksum = 1
    answer = reader.protocol.request(READ)
    assert answer.status == Status.OK and sam.commands[-2:] == [READ, READ]


def test_sam_reporting_a_checksum_error_is_asked_again(rig):
    sam, _, reader = rig
    sam.sam_checksum_error = 2
    assert reader.poll(1).name == "张三"
    assert sam.commands[:3] == [FIND, FIND, FIND]


def test_endless_corruption_is_a_reader_error_not_a_card(rig):
    sam, _, reader = rig
    sam.bad_checksum = 1000
    with pytest.raises(ReaderError, match="corrupted answer"):
        reader.poll(0)


def test_silent_module_is_a_reader_error(rig):
    _, ep, reader = rig
    ep.faults.mute = True
    with pytest.raises(ReaderError, match="no answer"):
        reader.poll(0)


def test_answer_cut_short_on_the_line_is_asked_again(rig):
    sam, ep, reader = rig
    ep.faults.truncate_next = 1
    assert reader.poll(2).name == "张三"
    assert sam.commands[:2] == [FIND, FIND]


@pytest.mark.parametrize("mode", ["fail", "silent", "truncated"])
def test_card_pulled_out_mid_read(rig, mode):
    sam, _, reader = rig
    sam.remove_during_read = mode
    with pytest.raises(CardRemoved):
        reader.poll(1)
    assert reader.poll(0.05) is None
    sam.card = resident_card(name="王五")
    assert reader.poll(1).name == "王五"


def test_unreadable_card_is_reported_once_per_presentation(rig):
    sam, _, reader = rig
    sam.card = resident_card(id_number="370102199001011234")
    with pytest.raises(CardUnreadable):
        reader.poll(1)
    assert reader.poll(0.1) is None
    assert reads(sam) == 1


def test_stale_input_is_flushed_before_a_request(rig):
    sam, ep, reader = rig
    sam.card = None
    assert reader.poll(0) is None           # the port is open now
    stale = encode(bytes([0, 0, Status.CARD_FOUND, 0, 0, 0, 0]))  # a stale "card found"
    ep.send(stale)
    # in the host's buffer, unread (the link keeps its port to itself: the test looks in; over
    # socket:// pyserial's in_waiting only says whether anything is there)
    wait_for(lambda: reader.link._port.in_waiting > 0, "the stale answer in the host's buffer")
    assert reader.poll(0) is None
    assert SELECT not in sam.commands


def test_unplug_and_replug(rig):
    sam, ep, reader = rig
    assert reader.poll(1).name == "张三"
    ep.unplug()
    with pytest.raises(LinkDown):
        reader.poll(0.1)
    with pytest.raises(LinkDown):
        reader.poll(0.1)
    ep.replug()
    card = reader.poll(2)  # the link reopens after its backoff; a new session reads afresh
    assert card is not None and card.name == "张三"
    assert reader.link.opens == 2


def test_unplugged_while_waiting_comes_back_within_the_same_poll(rig):
    sam, ep, reader = rig
    sam.card = None
    assert reader.poll(0) is None
    ep.unplug()
    sam.card = resident_card(name="赵六")
    replug = threading.Timer(0.2, ep.replug)
    replug.start()
    try:
        card = reader.poll(3)  # keeps retrying through the outage instead of giving up
    finally:
        replug.join()
    assert card.name == "赵六"


def test_missing_port_fails_fast(tmp_path):
    reader = IdCardReader(str(tmp_path / "no-such-tty"))
    with pytest.raises(LinkDown, match="cannot open"):
        reader.poll(0)
    reader.close()


def test_protocol_timeout_names_the_command(rig):
    _, ep, reader = rig
    ep.faults.mute = True
    proto = SamProtocol(SerialLink(ep.url), timeout=0.05, retries=1)
    try:
        with pytest.raises(SamNoAnswer, match="20 01: no answer after 2 attempts"):
            proto.request(FIND)
    finally:
        proto.link.close()


def test_no_threads_or_fds_leak():
    def fds():
        return len(os.listdir("/proc/self/fd"))

    # Collected before, so an earlier test's garbage closing its fds mid-test does not count;
    # not after, so a socket this test leaves to the garbage collector does.
    gc.collect()
    before_fds, before_threads = fds(), threading.active_count()
    for kind in ("pty", "tcp"):
        sam = VirtualSam(SimCard(), read_delay=0)
        with SerialEndpoint(sam, kind=kind) as ep:
            reader = IdCardReader(ep.url, backoff_min=0.01, backoff_max=0.02)
            assert reader.poll(1) is not None
            ep.unplug()
            ep.replug()
            assert reader.poll(2) is not None
            reader.close()
    assert (fds(), threading.active_count()) == (before_fds, before_threads)
