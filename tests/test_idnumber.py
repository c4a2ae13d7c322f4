import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import idnumber

REGION = st.text("0123456789", min_size=6, max_size=6)
BIRTH = st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31)).map(lambda d: d.strftime("%Y%m%d"))
SEQ = st.text("0123456789", min_size=3, max_size=3)


def with_check(first17: str) -> str:
    return first17 + idnumber.check_character(first17)


def test_check_character_by_hand():
    # 1*7 + 1*9 + 0*10 + 1*5 + 0*8 + 5*4 + 1*2 + 9*1 + 4*6 + 9*3 + 1*7 + 2*9 + 3*10
    # + 1*5 + 0*8 + 0*4 + 2*2 = 167; 167 % 11 = 2 -> "10X98765432"[2] = "X"
    assert idnumber.check_character("11010519491231002") == "X"
    assert idnumber.is_valid("11010519491231002X")


@pytest.mark.parametrize("number", [
    "11010519491231002x",      # check character must be upper-case X
    "110105194912310021",      # wrong check character
    "11010519490231002" + idnumber.check_character("11010519490231002"),  # right check, 31 February
    "1101051949123100X" + "X",  # a letter among the 17 digits
    "11010519491231002",       # 17 characters
    "１１０１０５１９４９１２３１００２X",  # full-width digits are digits to str.isdigit
    "",
])
def test_rejects(number):
    assert not idnumber.is_valid(number)


@given(REGION, BIRTH, SEQ)
def test_valid_numbers_pass_and_every_single_digit_error_is_caught(region, birth, seq):
    number = with_check(region + birth + seq)
    assert idnumber.is_valid(number)
    assert idnumber.birth_date(number).strftime("%Y%m%d") == birth
    for i in range(17):
        for d in "0123456789":
            if d != number[i]:
                assert not idnumber.is_valid(number[:i] + d + number[i + 1:])


@given(REGION, BIRTH, SEQ, st.integers(0, 15))
def test_adjacent_transpositions_are_caught(region, birth, seq, i):
    number = with_check(region + birth + seq)
    swapped = number[:i] + number[i + 1] + number[i] + number[i + 2:]
    if swapped != number:
        assert not idnumber.is_valid(swapped)


def test_check_character_wants_17_digits():
    with pytest.raises(ValueError):
        idnumber.check_character("1234")


def test_masks():
    assert idnumber.mask_name("张三") == "张*"
    assert idnumber.mask_name("欧阳娜娜") == "欧***"
    assert idnumber.mask_name("张") == "*"
    assert idnumber.mask_name("") == ""
    assert idnumber.mask_id("370102199001011234") == "370102********1234"
    assert idnumber.mask_id("USA110070070401") == "USA110*****0401"
    assert idnumber.mask_id("H12345678") == "H1*****78"
    assert idnumber.mask_address("山东省济南市历下区泉城路1号") == "山东省济南市***"
    assert idnumber.mask_address("北京") == "北***"
    assert idnumber.mask_address("") == ""


@given(st.text(min_size=2, max_size=40))
def test_masked_name_never_shows_more_than_the_first_character(name):
    masked = idnumber.mask_name(name)
    assert len(masked) == len(name) and masked[0] == name[0] and set(masked[1:]) == {"*"}


@given(st.text(min_size=1, max_size=40))
def test_masked_address_keeps_at_most_half(address):
    masked = idnumber.mask_address(address)
    assert masked.endswith("***") and address.startswith(masked[:-3])
    assert len(masked) - 3 <= min(6, len(address) // 2)
