"""The contract vectors (made with the OpenSSL command line), through the `verify` CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from terminal.cli import main

from conftest import ROOT, load_cases

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector_through_cli(case, vector_config, tmp_path, capsys):
    rc = main(["verify", "--config", str(vector_config), "--json", "--now", str(case["now"]),
               "--venue", case["venue"], "--state-dir", str(tmp_path / case["name"]), case["text"]])
    out = json.loads(capsys.readouterr().out)
    assert (out["decision"], out["reason"]) == (case["expect"]["decision"], case["expect"]["reason"])
    assert rc == (0 if case["expect"]["decision"] == "allow" else 1)


def test_vectors_console_script_and_stdin(vector_config, tmp_path):
    """The installed entry point, reading codes from stdin: one JSON line per code, in order."""
    mall = [c for c in CASES if c["venue"] == "mall" and c["now"] == 1768844563 and c["text"]]
    stdin = "".join(c["text"].rstrip("\r\n") + "\n" for c in mall)
    proc = subprocess.run([sys.executable, "-m", "terminal", "verify", "--config", str(vector_config),
                           "--json", "--now", "1768844563", "-"], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [(o["decision"], o["reason"]) for o in lines] == \
        [(c["expect"]["decision"], c["expect"]["reason"]) for c in mall]
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
