import argparse
import json
import socket

import pytest

from drivers.cards import CardRead
from sim.idcard_sam import VirtualSam, foreign_card, hmt_permit_card, resident_card
from sim.serial_endpoint import SerialEndpoint
from terminal.commands import card as cmd_card
from terminal.commands.usage import UsageError


def card(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cmd_card.register(parser.add_subparsers())
    args = parser.parse_args(["card", "read", *argv])
    return args.func(args)


@pytest.fixture(params=["pty", "tcp"])
def sam(request):
    sam = VirtualSam(resident_card(), read_delay=0)
    with SerialEndpoint(sam, kind=request.param) as ep:
        sam.url = ep.url
        yield sam


def test_masked_by_default(sam, capsys):
    assert card("--port", sam.url, "--timeout", "2") == 0
    out = capsys.readouterr().out
    assert "张*" in out and "370102********1231" in out and "山东省济南市***" in out
    assert "****-**-**" in out and "汉" in out and "2035-01-01" in out
    for secret in ("张三", "370102199001011231", "泉城路", "1990-01-01"):
        assert secret not in out


def test_show_and_json(sam, capsys):
    assert card("--port", sam.url, "--json", "--show") == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields == {
        "card": "resident ID card", "id_number": "370102199001011231", "name": "张三",
        "sex": "男", "nation": "汉", "birth_date": "1990-01-01",
        "address": "山东省济南市历下区泉城路1号", "authority": "济南市公安局历下分局",
        "valid_from": "2015-01-01", "valid_to": "2035-01-01"}


def test_json_is_masked_too(sam, capsys):
    assert card("--port", sam.url, "--json") == 0
    fields = json.loads(capsys.readouterr().out)
    assert (fields["name"], fields["id_number"], fields["address"], fields["birth_date"]) == (
        "张*", "370102********1231", "山东省济南市***", "****-**-**")


def test_residence_permit_and_foreign_card(sam, capsys):
    sam.card = hmt_permit_card()
    assert card("--port", sam.url, "--json") == 0
    fields = json.loads(capsys.readouterr().out)
    assert (fields["card"], fields["pass_number"], fields["issue_count"]) == (
        "HK/Macau/Taiwan residence permit", "H1*****78", "1")
    sam.card = foreign_card()
    assert card("--port", sam.url, "--json") == 0
    fields = json.loads(capsys.readouterr().out)
    assert (fields["card_number"], fields["english_name"], fields["nationality"]) == (
        "USA110*****0401", "S**********", "USA")


def test_no_card(sam, capsys):
    sam.card = None
    assert card("--port", sam.url, "--timeout", "0.2") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no card within 0.2 s" in err


def test_card_pulled_out(sam, capsys):
    sam.remove_during_read = "fail"
    assert card("--port", sam.url) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "card not read" in err and "removed" in err


def test_bad_card_says_why_without_showing_it(sam, capsys):
    sam.card = resident_card(id_number="370102199001011234")
    assert card("--port", sam.url) == 1
    captured = capsys.readouterr()
    assert "check character" in captured.err and "370102199001011234" not in captured.err
    assert captured.out == ""


def test_missing_device(tmp_path, capsys):
    assert card("--port", str(tmp_path / "ttyUSB9"), "--timeout", "5") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "port unavailable" in err and "ttyUSB9" in err


def test_refused_socket(capsys):
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert card("--port", f"socket://127.0.0.1:{port}") == 1
    assert "port unavailable" in capsys.readouterr().err


def test_reader_that_never_answers_properly(sam, capsys):
    sam.card = None
    sam.sam_checksum_error = 1000  # answers, but never a usable answer
    assert card("--port", sam.url) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not work" in err


@pytest.mark.parametrize("argv", [["--timeout", "-1"], ["--baud", "0"]])
def test_usage_errors(argv):
    with pytest.raises(UsageError):
        card("--port", "/dev/null", *argv)


def test_ss_card_fields_are_masked():
    read = CardRead(kind="ss_card", name="张三", id_number="11010519491231002X",
                    sex="女", birth_date="1949-12-31", valid_to="2030-01-01",
                    extra={"card_number": "A12345678"})
    assert cmd_card.card_fields(read, show=False) == {
        "card": "social-security card", "card_number": "A1*****78",
        "ss_number": "110105********002X", "name": "张*", "sex": "女",
        "birth_date": "****-**-**", "valid_to": "2030-01-01"}


@pytest.mark.parametrize("kind, line", [("id", "pty"), ("ss", "tcp")])
def test_a_simulated_reader_on_its_own_for_card_read(kind, line, capsys):
    """README: `gate-terminal sim reader` in one shell, `card read --port` in another."""
    import os
    import signal
    import subprocess
    import sys

    with subprocess.Popen([sys.executable, "-m", "terminal", "sim", "reader", "--kind", kind, "--line", line],
                          stdout=subprocess.PIPE, text=True) as proc:
        try:
            url = proc.stdout.readline().strip()
            assert url.startswith("socket://127.0.0.1:" if line == "tcp" else "/")
            assert f"card read --port {url} --kind {kind}" in proc.stdout.readline()
            assert card("--port", url, "--kind", kind, "--json", "--timeout", "10") == 0
            out = json.loads(capsys.readouterr().out)
            assert out["card"] == {"id": "resident ID card", "ss": "social-security card"}[kind]
            assert out["name"] == "张*"                       # masked, as always without --show
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
    if line == "pty":
        assert not os.path.exists(url)    # the symlink went with it
