"""Run the CLI in-process through its real entry point and capture what a user sees."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from microlad.cli import main


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def assert_one_line_error(res: Result, *fragments: str) -> None:
    """Non-zero exit, exactly one 'error: ...' line on stderr naming the problem."""
    assert res.exit_code != 0, res
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got: {res.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in res.stderr
    for frag in fragments:
        assert frag.lower() in lines[0].lower(), (frag, lines[0])
