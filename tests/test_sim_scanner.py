"""``gate-terminal sim scanner``: a simulated scan engine on its own, read by ``scanner read``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from terminal import cli

from conftest import ROOT


def start(*argv: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "terminal", "sim", "scanner", *argv], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def stopped(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()


def test_fresh_codes_every_interval_read_by_scanner_read(keyset, capsys):
    proc, url = start("--keys", str(keyset), "--every", "0.1", "--hold", "0.3", "--repeat", "0.1",
                      "--suffix", "crlf", "--prefix", "]Q1", "--banner", "EM20 boot", "--garbage", "00ff")
    try:
        assert os.path.islink(url)
        assert cli.main(["scanner", "read", "--port", url, "--suffix", "crlf", "--prefix", "]Q1",
                         "--count", "2", "--json", "--timeout", "30"]) == 0
        codes = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()]
        assert len(codes) == 2 and codes[0] != codes[1] and all(c.startswith("SDHC1:") for c in codes)
    finally:
        assert stopped(proc) == 0
    assert not Path(url).exists() and not Path(url).parent.exists()  # its pty link is cleaned up


def test_lines_typed_on_stdin_over_tcp(capsys):
    proc, url = start("--kind", "tcp", "--repeat", "0.05", "--hold", "30")
    try:
        assert url.startswith("socket://127.0.0.1:")
        proc.stdin.write("HELLO-42\n")
        proc.stdin.flush()
        assert cli.main(["scanner", "read", "--port", url, "--timeout", "30"]) == 0
        assert capsys.readouterr().out == "HELLO-42\n"
    finally:
        assert stopped(proc) == 0


@pytest.mark.parametrize("argv, message", [
    (["--every", "1"], "--every needs --keys"),
    (["--garbage", "zz"], "--garbage must be hex bytes"),
    (["--repeat", "-1"], "--repeat must be 0-3600 seconds"),
    (["--keys", "/nonexistent/keys"], "--keys /nonexistent/keys"),
])
def test_usage_errors(argv, message, capsys):
    assert cli.main(["sim", "scanner", *argv]) == 2
    assert message in capsys.readouterr().err
