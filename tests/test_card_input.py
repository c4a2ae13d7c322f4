"""terminal/inputs/cards.py: what a card reader's thread does with each outcome of a poll."""
from __future__ import annotations

import threading

from drivers.cards import CardRead, CardRemoved, CardUnreadable, ReaderError
from drivers.serial_link import LinkDown
from terminal.inputs.cards import CardInput
from waiting import wait_for

CARD = CardRead(kind="id_card", name="张三", id_number="11010519491231002X")


class Reader:
    """Polls answer in order what they are given (a card, None or an exception), then None."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.polls = 0

    def poll(self, timeout):
        self.polls += 1
        step = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(step, Exception):
            raise step
        return step

    def close(self):
        pass


def run(mocker, *outcomes, now=1.0e9, is_staff=lambda n: False, lookup=None):
    reader, put, unread = Reader(*outcomes), mocker.Mock(), mocker.Mock()
    devices, watchdog, metrics = mocker.Mock(), mocker.Mock(), mocker.Mock()
    source = mocker.Mock()
    source.lookup.return_value = "green"
    source.lookup.side_effect = lookup
    inp = CardInput("id_card", reader, put, now=lambda: now, status_source=source, unread=unread,
                    devices=devices, watchdog=watchdog, metrics=metrics, is_staff=is_staff)
    stop = threading.Event()
    inp.start(stop)
    try:
        wait_for(lambda: reader.polls > len(outcomes), "every outcome polled and one more", timeout=10)
    finally:
        stop.set()
        inp.thread.join(5)
    assert not inp.thread.is_alive()
    return put, unread, devices, source


def test_a_card_not_read_tells_the_person_and_the_thread_reads_on(mocker):
    put, unread, devices, _ = run(mocker, CardUnreadable("photo checksum"), CardRemoved("pulled"), CARD)
    assert unread.call_count == 2                  # 读卡失败，请重新刷卡, once per failed card
    assert [c.args[0].card for c in put.call_args_list] == [CARD]   # the next card still decided
    devices.fail.assert_not_called()               # the reader itself is fine


def test_a_reader_gone_is_a_device_fault_not_a_card_to_read_again(mocker):
    put, unread, devices, _ = run(mocker, LinkDown("gone"), ReaderError("find card answered 0x41"), CARD)
    assert [c.args for c in devices.fail.call_args_list] == [("id_card", "gone"),
                                                              ("id_card", "find card answered 0x41")]
    unread.assert_not_called()
    assert [c.args[0].card for c in put.call_args_list] == [CARD]
    devices.ok.assert_called_with("id_card")       # and back once it answers


def test_the_hub_is_asked_about_a_visitor_only_with_trusted_time_and_not_about_staff(mocker):
    put, _, _, source = run(mocker, CARD)
    assert put.call_args.args[0].health == "green"
    source.lookup.assert_called_once_with("id_card", CARD.id_number, CARD.name, 1.0e9)
    put, _, _, source = run(mocker, CARD, is_staff=lambda n: n == CARD.id_number)
    assert put.call_args.args[0].health is None and not source.lookup.called
    put, _, _, source = run(mocker, CARD, now=None)             # clock untrusted: nothing to ask
    assert put.call_args.args[0].health is None and not source.lookup.called


def test_a_failing_status_lookup_costs_the_card_its_answer_not_the_reader(mocker):
    put, unread, devices, source = run(mocker, CARD, CARD, lookup=RuntimeError("cache corrupt"))
    assert [c.args[0].health for c in put.call_args_list] == [None, None]   # decided offline_unknown
    assert source.lookup.call_count == 2 and not unread.called and not devices.fail.called
