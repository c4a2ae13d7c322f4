"""The serial scan engine driver against the simulated engine, over a pseudo-terminal and over
``socket://``, with every fault knob of the simulator."""
from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from drivers.scanner.reader import MAX_WAITING, ScanEngine, SerialScanner
from drivers.serial_link import LinkDown
from sim.scan_engine import BANNER, VirtualScanEngine

from waiting import wait_for

CODE = "SDHC1:6BF/KL8Q+ABC"


@pytest.fixture(params=["pty", "tcp"])
def kind(request):
    return request.param


@contextmanager
def engine_and_scanner(kind, *, prefix="", suffix="cr", repeat=None, banner=None, gap=1.5, **kw):
    engine = VirtualScanEngine(kind=kind, prefix=prefix, suffix=suffix, repeat=repeat, banner=banner).start()
    scanner = SerialScanner(engine.url, prefix=prefix, suffix=suffix, gap=gap, backoff_min=0.05,
                            backoff_max=0.2, **kw)
    try:
        # open the port now: an engine's bytes before that are lost, as on a real line
        wait_for(lambda: reopened(scanner) and engine.endpoint.connected, "the scanner connected")
        yield engine, scanner
    finally:
        scanner.close()
        engine.stop()


def polls(scanner, seconds: float) -> list[str]:
    """Every presentation read within ``seconds``."""
    end, out = time.monotonic() + seconds, []
    while (left := end - time.monotonic()) > 0:
        r = scanner.poll(left)
        if r is not None:
            out.append(r.text)
    return out


def reopened(scanner) -> bool:
    try:
        scanner.poll(0)
    except LinkDown:
        return False
    return scanner.link.is_open


def quiet_for(engine, seconds: float) -> None:
    """Wait until the engine has sent nothing for ``seconds``."""
    wait_for(lambda: time.monotonic() - engine.sent[-1][1] > seconds, f"the engine quiet for {seconds} s")


@pytest.mark.parametrize("suffix", ["cr", "lf", "crlf"])
def test_a_code_read_once_with_each_suffix(kind, suffix):
    with engine_and_scanner(kind, suffix=suffix, prefix="]Q1") as (engine, scanner):
        before = time.monotonic()
        engine.show(CODE)
        r = scanner.poll(10)
        assert r is not None and r.text == CODE and r.at >= before
        assert scanner.poll(0.3) is None              # sent once (no repeat): nothing more


def test_repeats_of_a_code_in_view_are_one_presentation_then_it_is_new(kind):
    with engine_and_scanner(kind, repeat=0.1, gap=1.5) as (engine, scanner):
        engine.show(CODE)
        got = []

        def repeats_read():
            r = scanner.poll(0.05)
            if r is not None:
                got.append(r.text)
            return scanner.fold.repeats >= 5
        wait_for(repeats_read, "the engine's repeats read")
        assert got == [CODE]                          # its repeats folded into the one presentation
        engine.clear()
        quiet_for(engine, 1.6)                        # gone longer than the window (1.5 s) ...
        engine.show(CODE)
        assert scanner.poll(10).text == CODE          # ... so shown again it is a new presentation


def test_two_codes_in_one_read_are_both_presented(kind):
    with engine_and_scanner(kind) as (engine, scanner):
        engine.endpoint.send(b"FIRST\rSECOND\r")
        assert [scanner.poll(10).text, scanner.poll(10).text] == ["FIRST", "SECOND"]


def test_garbage_before_each_code(kind):
    with engine_and_scanner(kind, prefix="]Q1") as (engine, scanner):
        engine.faults.garbage = b"\x00\xff\x13x]Q"
        engine.show(CODE)
        assert scanner.poll(10).text == CODE
        assert scanner.parser.noisy == 1


def test_split_writes_are_joined(kind):
    with engine_and_scanner(kind, suffix="crlf") as (engine, scanner):
        engine.faults.chunk_size, engine.faults.chunk_delay = 3, 0.02
        engine.show(CODE)
        assert scanner.poll(10).text == CODE
        assert scanner.decoder.resyncs == 0


def test_a_line_cut_off_by_silence_is_not_glued_to_the_next_code(kind):
    with engine_and_scanner(kind, line_gap=0.2) as (engine, scanner):
        engine.faults.truncate_next = 1  # the engine stops half-way through the first code
        engine.show("LOSTHALFOFIT")
        wait_for(lambda: engine.sent, "the truncated line")
        wait_for(lambda: scanner.poll(0) is None and scanner.decoder.in_line, "half a line read")
        engine.decode_delay = 0.5                     # the next code comes 0.5 s later ...
        engine.show(CODE)
        assert scanner.poll(10).text == CODE          # ... while the scanner waits and sees the silence
        assert scanner.decoder.resyncs == 1


def test_a_line_waiting_in_the_buffer_is_not_silence(kind):
    """Bytes that came while nobody was reading are read whole later: the driver measures silence
    only while it listens."""
    with engine_and_scanner(kind, line_gap=0.1) as (engine, scanner):
        engine.faults.chunk_size, engine.faults.chunk_delay = 4, 0.01
        engine.show(CODE)
        wait_for(lambda: engine.sent, "the code sent in pieces")
        quiet_for(engine, 0.3)                        # three line gaps with nobody reading
        assert scanner.poll(10).text == CODE and scanner.decoder.resyncs == 0


def test_mute_engine_reads_nothing(kind):
    with engine_and_scanner(kind) as (engine, scanner):
        engine.faults.mute = True
        engine.show(CODE)
        wait_for(lambda: engine.sent, "the engine to try")
        assert scanner.poll(0.3) is None


def test_over_long_line_is_garbage_and_the_next_code_reads(kind):
    with engine_and_scanner(kind) as (engine, scanner):
        engine.endpoint.send(b"Z" * 5000 + b"\r" + CODE.encode() + b"\r")
        assert scanner.poll(10).text == CODE
        assert scanner.decoder.long_lines == 1


def test_unplug_raises_link_down_and_replug_brings_banner_then_code(kind):
    with engine_and_scanner(kind, prefix="]Q1", banner=BANNER) as (engine, scanner):
        engine.show(CODE)
        assert scanner.poll(10).text == CODE
        assert scanner.parser.banners == 1            # the power-on banner came first: ignored
        engine.unplug()
        with pytest.raises(LinkDown):
            scanner.poll(0.5)
        assert not scanner.link.is_open
        engine.replug()
        wait_for(lambda: reopened(scanner) and engine.endpoint.connected, "the port reopened")
        engine.show("SDHC1:NEXT")
        assert scanner.poll(10).text == "SDHC1:NEXT"
        assert scanner.parser.banners == 2            # powered up again: banner again, ignored
        assert scanner.parser.codes == 2


def test_missing_port_fails_fast():
    scanner = SerialScanner("/nonexistent/scanner", backoff_min=0.05, backoff_max=0.1)
    t = time.monotonic()
    with pytest.raises(LinkDown, match="cannot open"):
        scanner.poll(0)
    with pytest.raises(LinkDown):
        scanner.poll(0.3)                              # retried with backoff until the deadline
    assert time.monotonic() - t < 5


def test_unknown_suffix_is_refused():
    with pytest.raises(ValueError, match="suffix must be one of cr, lf, crlf"):
        SerialScanner("/dev/null", suffix="tab")


class Burst(ScanEngine):
    """An engine whose one read brings ``n`` distinct codes at once."""

    def __init__(self, n: int):
        super().__init__()
        self.lines = [f"C{i}" for i in range(n)]

    def _lines(self, timeout):
        lines, self.lines = self.lines, []
        return lines


@pytest.mark.parametrize("n", [MAX_WAITING, MAX_WAITING + 1])
def test_codes_waiting_to_be_polled_are_bounded_keeping_the_newest(n):
    engine = Burst(n)
    got = []
    while (r := engine.poll(0)) is not None:
        got.append(r.text)
    assert got == [f"C{i}" for i in range(n - MAX_WAITING, n)]
