"""The social-security card's responses, byte by byte: status words, chained replies, records
and the four values, each at its limits (the whole read is in test_sscard_reader.py)."""
from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from drivers.cards import CardRead, CardUnreadable
from drivers.sscard import card as sscard

H = bytes.fromhex


@pytest.fixture
def scripted(mocker):
    """Makes a card that gives the replies it is told to, in order: an autospec'd ApduChannel."""
    def make(*replies: bytes):
        card = mocker.create_autospec(sscard.ApduChannel, instance=True)
        card.transmit.side_effect = list(replies)
        return card
    return make


def sent(card) -> list[bytes]:
    """The APDUs the card was sent, in order."""
    return [c.args[0] for c in card.transmit.call_args_list]


# --- status words --------------------------------------------------------------------------

@pytest.mark.parametrize("reply", [b"", b"\x90"])
def test_reply_without_a_status_word_is_unreadable(reply, scripted):
    with pytest.raises(CardUnreadable, match=f"^select EF05: reply of {len(reply)} bytes has no status word$"):
        sscard.select(scripted(reply), "select EF05", sscard.SELECT_EF05)


@pytest.mark.parametrize("sw", [0x9000, 0x6100, 0x6101, 0x61FF])
def test_select_accepts_ok_and_61xx(sw, scripted):
    card = scripted(sw.to_bytes(2, "big"))
    sscard.select(card, "select EF05", sscard.SELECT_EF05)
    assert sent(card) == [sscard.SELECT_EF05]


@pytest.mark.parametrize("sw", [0x9001, 0x8FFF, 0x60FF, 0x6200, 0x6A82, 0x0000])
def test_select_refuses_everything_else(sw, scripted):
    with pytest.raises(sscard.ApduError) as e:
        sscard.select(scripted(H("AABB") + sw.to_bytes(2, "big")), "select EF05", sscard.SELECT_EF05)
    assert (e.value.step, e.value.sw) == ("select EF05", sw)
    assert str(e.value) == f"select EF05: SW {sw:04X} ({sscard.sw_name(sw)})"


@pytest.mark.parametrize("sw, name", [
    (0x6A82, "file or application not found"),
    (0x6F00, "no precise diagnosis"),
    (0x6100, "256 more bytes available"),
    (0x6101, "1 more bytes available"),
    (0x61FF, "255 more bytes available"),
    (0x6C00, "wrong Le, card has 0 bytes"),
    (0x6C20, "wrong Le, card has 32 bytes"),
    (0x6000, "unknown status"),
    (0x6200, "unknown status"),
    (0x6B01, "unknown status"),
    (0x6D01, "unknown status"),
])
def test_status_word_names(sw, name):
    assert sscard.sw_name(sw) == name


# --- records ---------------------------------------------------------------------------------

NUMBER = H("0709") + b"A00000001"


def test_read_record_asks_by_tag_for_tag_length_and_value(scripted):
    card = scripted(NUMBER + H("9000"))
    assert sscard.read_record(card, "read card number", sscard.TAG_CARD_NUMBER) == b"A00000001"
    assert sent(card) == [H("00B207000B")]


def test_61xx_fetches_the_rest_with_get_response(scripted):
    card = scripted(NUMBER[:3] + H("6108"), NUMBER[3:] + H("9000"))
    assert sscard.read_record(card, "read card number", sscard.TAG_CARD_NUMBER) == b"A00000001"
    assert sent(card) == [H("00B207000B"), H("00C0000008")]


def test_6100_asks_for_256_bytes_as_le_00(scripted):
    card = scripted(NUMBER[:3] + H("6100"), NUMBER[3:] + H("9000"))
    sscard.read_record(card, "read card number", sscard.TAG_CARD_NUMBER)
    assert sent(card)[1] == H("00C0000000")


def test_get_response_at_most_four_times(scripted):
    four = scripted(NUMBER[:3] + H("6102"), NUMBER[3:5] + H("6102"), NUMBER[5:7] + H("6102"),
                    NUMBER[7:9] + H("6107"), NUMBER[9:] + H("9000"))
    assert sscard.read_record(four, "read card number", sscard.TAG_CARD_NUMBER) == b"A00000001"
    assert len(sent(four)) == 5
    five = scripted(*[H("6101")] * 6)
    with pytest.raises(sscard.ApduError, match=r"^read card number: SW 6101 \(1 more bytes available\)$"):
        sscard.read_record(five, "read card number", sscard.TAG_CARD_NUMBER)
    assert len(sent(five)) == 5  # the first reply and four GET RESPONSEs, then it gives up


@pytest.mark.parametrize("sw", [0x6A83, 0x9001, 0x6281])
def test_record_refused(sw, scripted):
    with pytest.raises(sscard.ApduError) as e:
        sscard.read_record(scripted(NUMBER + sw.to_bytes(2, "big")), "read card number", sscard.TAG_CARD_NUMBER)
    assert e.value.sw == sw


@pytest.mark.parametrize("data, words", [
    (b"", r"record  is not tag 07"),
    (H("07"), r"record 07 is not tag 07"),
    (H("0609") + b"A" * 9, r"record 06 09 is not tag 07"),
    (H("0708") + b"A" * 9, r"record length 8 with 9 value bytes, expected 9"),
    (H("070A") + b"A" * 9, r"record length 10 with 9 value bytes, expected 9"),
    (H("0709") + b"A" * 8, r"record length 9 with 8 value bytes, expected 9"),
    (H("0709") + b"A" * 10, r"record length 9 with 10 value bytes, expected 9"),
])
def test_record_shape_is_checked(data, words):
    with pytest.raises(CardUnreadable, match=f"^read card number: {words}$"):
        sscard.parse_record("read card number", data, 0x07, 9)


def test_record_of_the_right_shape():
    assert sscard.parse_record("s", H("0709") + b"A" * 9, 0x07, 9) == b"A" * 9
    assert sscard.parse_record("s", H("0600"), 0x06, 0) == b""


# --- values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [b"A00000001", b"z12345678", b"123456789"])
def test_card_number(value):
    assert sscard.decode_card_number(value) == value.decode()


@pytest.mark.parametrize("value", [b"A0000000 ", b"A0000000-", "A0000000Ä".encode("latin-1"), b"A0000000\x00"])
def test_card_number_refused(value):
    with pytest.raises(CardUnreadable, match="^card number is not 9 ASCII letters/digits$"):
        sscard.decode_card_number(value)


@pytest.mark.parametrize("value, day", [
    (H("20301231"), date(2030, 12, 31)),
    (H("20000101"), date(2000, 1, 1)),
    (H("20240229"), date(2024, 2, 29)),
])
def test_expiry(value, day):
    assert sscard.decode_expiry(value) == day


@pytest.mark.parametrize("value, words", [
    (H("2030123A"), "expiry is not BCD"),
    (H("A0301231"), "expiry is not BCD"),
    (H("20301232"), "expiry is not a calendar date"),
    (H("20301301"), "expiry is not a calendar date"),
    (H("20230229"), "expiry is not a calendar date"),
    (H("00000000"), "expiry is not a calendar date"),
])
def test_expiry_refused(value, words):
    with pytest.raises(CardUnreadable, match=f"^{words}$"):
        sscard.decode_expiry(value)


def test_ssn():
    assert sscard.decode_ssn(b"11010519491231002X") == "11010519491231002X"
    for bad in (b"110105194912310021", b"11010519491231002\xff"):
        with pytest.raises(CardUnreadable, match="^social security number fails the GB 11643 check$"):
            sscard.decode_ssn(bad)


@pytest.mark.parametrize("value, name", [
    ("李晓明".encode("gbk") + b" " * 24, "李晓明"),
    ("李晓明".encode("gbk") + b"\x00" * 24, "李晓明"),
    ("李晓明\u3000".encode("gbk") + b" " * 22, "李晓明"),
    (b" " + "欧阳 娜娜".encode("gbk") + b" " * 20, "欧阳 娜娜"),   # only the padding goes
    (b"XAVIER X" + b" " * 22, "XAVIER X"),
])
def test_name(value, name):
    assert sscard.decode_name(value) == name


@pytest.mark.parametrize("value, words", [
    (b" " * 30, "name is empty"),
    ("\u3000".encode("gbk") * 15, "name is empty"),
    (b"\xff\xff" + b" " * 28, "name is not GBK text"),
])
def test_name_refused(value, words):
    with pytest.raises(CardUnreadable, match=f"^{words}$"):
        sscard.decode_name(value)


def test_record_faults_name_their_step(scripted):
    with pytest.raises(CardUnreadable, match="^read name: reply of 1 bytes has no status word$"):
        sscard.read_record(scripted(b"\x90"), "read name", sscard.TAG_NAME)
    with pytest.raises(CardUnreadable, match="^read name: reply of 0 bytes has no status word$"):
        sscard.read_record(scripted(H("0910") + H("6110"), b""), "read name", sscard.TAG_NAME)  # GET RESPONSE
    with pytest.raises(CardUnreadable, match="^read name: record 07 09 is not tag 09$"):
        sscard.read_record(scripted(NUMBER + H("9000")), "read name", sscard.TAG_NAME)


STEPS = ["select SSSE", "select EF05", "read card number", "read expiry", "select EF06",
         "read social security number", "read name"]
GOOD = [H("9000"), H("6110"), NUMBER + H("9000"), H("0604 20301231 9000"), H("9000"),
        H("0812") + b"11010519491231002X" + H("9000"), H("091E") + "李晓明".encode("gbk").ljust(30) + H("9000")]


def test_a_whole_read(scripted):
    assert sscard.read_card(scripted(*GOOD)) == sscard.SsCardData("A00000001", date(2030, 12, 31),
                                                              "11010519491231002X", "李晓明")


def test_the_card_read_takes_birth_date_and_sex_from_the_number():
    data = sscard.SsCardData("A00000001", date(2030, 12, 31), "11010519491231002X", "李晓明")
    assert data.to_card_read() == CardRead(kind="ss_card", name="李晓明", id_number="11010519491231002X",
                                           sex="女", birth_date="1949-12-31", valid_to="2030-12-31",
                                           extra={"card_number": "A00000001"})
    # digit 17 odd: a man; a number whose date is not a real one gives no birth date
    read = replace(data, ss_number="110105194913310031").to_card_read()
    assert (read.sex, read.birth_date) == ("男", None)


@pytest.mark.parametrize("k", range(len(STEPS)))
def test_each_refusal_names_its_step(k, scripted):
    card = scripted(*GOOD[:k], H("6A82"))
    with pytest.raises(sscard.ApduError, match=rf"^{STEPS[k]}: SW 6A82 \(file or application not found\)$"):
        sscard.read_card(card)
    assert len(sent(card)) == k + 1
