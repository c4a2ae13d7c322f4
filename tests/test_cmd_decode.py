"""``gate-terminal decode`` on image files."""
from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from sim.camera import LEVELS, degraded_frame, sample_text
from terminal.commands import decode as cmd_decode

TEXT = sample_text(np.random.default_rng(1))


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    s = p.add_subparsers()
    cmd_decode.register(s)
    args = p.parse_args(["decode", *argv])
    return args.func(args)


@pytest.fixture
def files(tmp_path):
    code = tmp_path / "code.png"
    cv2.imwrite(str(code), degraded_frame(TEXT, LEVELS["mild"], 3))
    jpeg = tmp_path / "code.jpg"
    cv2.imwrite(str(jpeg), degraded_frame(TEXT, LEVELS["clean"], 4))
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.full((480, 640, 3), 128, np.uint8))
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    return {"code": str(code), "jpeg": str(jpeg), "empty": str(empty), "text": str(text),
            "missing": str(tmp_path / "missing.png"), "dir": str(tmp_path)}


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_json_one_line_per_image(files, capsys) -> None:
    rc = run(["--json", files["code"], files["jpeg"]])
    rows = json_lines(capsys.readouterr().out)
    assert rc == 0
    assert [r["file"] for r in rows] == [files["code"], files["jpeg"]]
    for r in rows:
        assert r["texts"] == [TEXT] and r["ms"] > 0 and "error" not in r


def test_json_errors_and_no_code(files, capsys) -> None:
    order = ["code", "missing", "text", "empty", "dir"]
    rc = run(["--json", *(files[k] for k in order)])
    rows = json_lines(capsys.readouterr().out)
    assert rc == 1
    assert [r["file"] for r in rows] == [files[k] for k in order]
    code, missing, text, empty, directory = rows
    assert code["texts"] == [TEXT]
    assert missing == {"file": files["missing"], "texts": [], "error": "no such file"}
    assert text == {"file": files["text"], "texts": [], "error": "not a readable image"}
    assert empty["texts"] == [] and "error" not in empty and empty["ms"] > 0
    assert directory["error"] == "is a directory"


def test_a_file_without_a_code_alone_fails(files, capsys) -> None:
    assert run(["--json", files["empty"]]) == 1
    assert run([files["empty"]]) == 1


def test_readable_lines(files, capsys) -> None:
    rc = run([files["code"], files["missing"], files["empty"]])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert lines[0].startswith(f"{files['code']}: {TEXT}  (") and lines[0].endswith(" ms)")
    assert lines[1] == f"{files['missing']}: error: no such file"
    assert lines[2].startswith(f"{files['empty']}: no code found (")


def test_no_images_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        run([])
    assert e.value.code == 2
