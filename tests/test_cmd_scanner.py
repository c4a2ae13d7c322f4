"""``gate-terminal scanner read`` against the simulated scan engine, over a pty and socket://."""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
import threading

import pytest

from sim.scan_engine import VirtualScanEngine
from terminal import cli
from terminal.commands import scanner as cmd
from terminal.commands.usage import UsageError

from waiting import wait_for

CODE = "SDHC1:6BF/KL8Q+ABC"


@pytest.fixture(params=["pty", "tcp"])
def engine(request):
    with VirtualScanEngine(kind=request.param, repeat=0.05) as e:
        yield e


def running(monkeypatch, *argv):
    """Start ``gate-terminal scanner read ARGV`` on a thread; returns (thread, stdout, result):
    the test watches stdout while the command runs."""
    out, result = io.StringIO(), {}
    monkeypatch.setattr(sys, "stdout", out)
    t = threading.Thread(target=lambda: result.setdefault("rc", cli.main(["scanner", "read", *argv])))
    t.start()
    return t, out, result


def test_each_presentation_printed_once_then_exit_after_count(engine, monkeypatch):
    t, out, result = running(monkeypatch, "--port", engine.url, "--count", "2", "--timeout", "30")
    engine.show(CODE)                                  # repeated every 50 ms while in view
    wait_for(lambda: out.getvalue() == CODE + "\n", "the first code printed")
    wait_for(lambda: len(engine.sent) >= 10, "the engine repeating it")
    engine.show("SDHC1:SECOND")
    t.join(30)
    assert result == {"rc": 0}
    assert out.getvalue() == f"{CODE}\nSDHC1:SECOND\n"


def test_json_prefix_and_suffix(monkeypatch):
    with VirtualScanEngine(prefix="]Q1", suffix="crlf", repeat=0.05, banner="EM20 boot") as engine:
        t, out, result = running(monkeypatch, "--port", engine.url, "--prefix", "]Q1", "--suffix", "crlf",
                                 "--baud", "115200", "--json", "--timeout", "30")
        engine.show("码 " + CODE)
        t.join(30)
    assert result == {"rc": 0}
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [{"text": "码 " + CODE}]


def test_timeout_without_a_code_exits_1_and_says_what_came_instead(engine, capsys):
    engine.show(CODE)                                  # no prefix: not what the command waits for
    assert cli.main(["scanner", "read", "--port", engine.url, "--prefix", "]Q1", "--timeout", "3"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.fullmatch(r"gate-terminal: no code within 3 s \(\d+ lines? without the prefix\)\n", captured.err)


def test_timeout_on_a_silent_engine(engine, capsys):
    assert cli.main(["scanner", "read", "--port", engine.url, "--timeout", "0.3"]) == 1
    assert capsys.readouterr().err == "gate-terminal: no code within 0.3 s\n"


def test_timeout_after_some_codes_is_success(engine, monkeypatch):
    t, out, result = running(monkeypatch, "--port", engine.url, "--count", "5", "--timeout", "4")
    engine.show(CODE)
    t.join(30)
    assert result == {"rc": 0} and out.getvalue() == CODE + "\n"


def test_missing_port_fails_at_once(capsys):
    assert cli.main(["scanner", "read", "--port", "/nonexistent/ttyACM9", "--timeout", "30"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gate-terminal: port unavailable: /nonexistent/ttyACM9")


@pytest.mark.parametrize("argv, message", [
    (["--count", "0"], "--count 0: must be 1-10000"),
    (["--count", "10001"], "--count 10001: must be 1-10000"),
    (["--timeout", "-1"], "--timeout -1.0: must be 0-3600"),
    (["--timeout", "3601"], "--timeout 3601.0: must be 0-3600"),
    (["--baud", "0"], "--baud 0: must be a positive number"),
    (["--prefix", "12345678901234567"], "--prefix: must be up to 16 characters"),
])
def test_usage_errors(argv, message):
    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["scanner", "read", "--port", "/dev/null", *argv])
    with pytest.raises(UsageError, match=re.escape(message)):
        cmd.run(args)


def test_empty_port_is_a_usage_error(capsys):
    assert cli.main(["scanner", "read", "--port", ""]) == 2
    assert "--port or --device must name the engine" in capsys.readouterr().err


def test_limits_accepted(engine, capsys):
    # the other side of each limit: count 10000, timeout 0, a 16-character prefix
    assert cli.main(["scanner", "read", "--port", engine.url, "--count", "10000", "--timeout", "0",
                     "--prefix", "1234567890123456"]) == 1
    assert "no code within 0 s" in capsys.readouterr().err
