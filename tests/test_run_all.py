"""bench/run_all.py: every results snippet has a command or is hand-kept, every command runs an
existing bench script, and assembling writes every snippet (into a temporary file)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import run_all  # noqa: E402
from registry import HAND_KEPT, REGISTRY, Entry  # noqa: E402

SNIPPETS = sorted(p.stem for p in (BENCH / "results").glob("*.md"))


def test_every_snippet_has_a_command_or_is_hand_kept():
    missing = [n for n in SNIPPETS if n not in REGISTRY and n not in HAND_KEPT]
    assert not missing, f"snippets without a registry entry in bench/registry.py: {missing}"
    assert set(run_all.TAIL) <= set(HAND_KEPT)
    assert not set(REGISTRY) & set(HAND_KEPT)


def test_every_command_names_an_existing_bench_script():
    for e in REGISTRY.values():
        argv = shlex.split(e.command)
        assert argv[0] == "python", e.command
        assert argv[1] == e.script and argv[1].startswith("bench/") and (BENCH.parent / argv[1]).is_file(), e.command
        assert e.minutes > 0
        for cmd in e.setup:  # setup steps: the microlad CLI or a bench script
            first = shlex.split(cmd)
            assert first[0] == "microlad" or (first[0] == "python" and (BENCH.parent / first[1]).is_file()), cmd


def test_every_measured_snippet_states_its_command_and_the_paper():
    for name in REGISTRY:
        text = (BENCH / "results" / f"{name}.md").read_text()
        assert "Command:" in text and "Paper:" in text, name
        assert "load" in text.lower() and "Machine" in text, name


def test_assemble_writes_every_snippet(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    assert run_all.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith(run_all.HEADER)
    for name in SNIPPETS:
        assert (BENCH / "results" / f"{name}.md").read_text().strip() in text, name
    # hand-kept tail sections last, in TAIL's order
    assert run_all.snippet_names()[-len(run_all.TAIL):] == run_all.TAIL


def test_list_names_every_snippet(capsys):
    assert run_all.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in SNIPPETS:
        assert f"{name}  [" in out, name


def test_rerun_skips_missing_model_dirs_stale_and_slow_entries_without_running(monkeypatch, tmp_path, capsys):
    ran = []
    monkeypatch.setattr(run_all.subprocess, "run", lambda *a, **k: ran.append(a))
    monkeypatch.setitem(REGISTRY, "x_missing", Entry("x_missing", "python bench/bench_grid_solver.py", 1, needs=("/nonexistent/runs/m",)))
    monkeypatch.setitem(REGISTRY, "x_stale", Entry("x_stale", "python bench/bench_grid_solver.py", 1, stale="measured a rule that is gone"))
    monkeypatch.setitem(REGISTRY, "x_slow", Entry("x_slow", "python bench/bench_grid_solver.py", 60))
    assert run_all.main(["--rerun", "x_missing", "x_stale", "x_slow", "--skip-slow", "--out", str(tmp_path / "B.md")]) == 0
    out = capsys.readouterr().out
    assert not ran
    assert "skip x_missing: needs /nonexistent/runs/m" in out
    assert "skip x_stale: no command reproduces it anymore" in out
    assert "skip x_slow: slow" in out
    assert (tmp_path / "B.md").is_file()


def test_rerun_unknown_or_hand_kept_name_is_an_error(tmp_path, capsys):
    assert run_all.main(["--rerun", "design_measurements", "--out", str(tmp_path / "B.md")]) == 2
    assert "hand-kept" in capsys.readouterr().err
    assert not (tmp_path / "B.md").exists()


def test_expand_fills_in_the_data_folder_and_this_interpreter():
    argv = run_all.expand("python bench/bench_fidelity.py m $DATA/2d/x.tif --note 'a b'")
    assert argv[0] == sys.executable
    assert argv[3] == str(run_all.SHARED_DATA / "2d" / "x.tif")
    assert argv[-1] == "a b"


@pytest.mark.parametrize("name", ["transport", "grid_solver", "evaluate"])
def test_cheap_entries_need_nothing_outside_the_repository_but_the_shared_data(name):
    e = REGISTRY[name]
    assert all(p.startswith("$DATA/") for p in e.inputs) and not e.stale and not e.slow


def test_missing_shared_data_is_named_with_the_variable_that_fixes_it(monkeypatch):
    monkeypatch.setattr(run_all, "SHARED_DATA", Path("/nonexistent/shared/data"))
    why = run_all.skip_reason(REGISTRY["fidelity_sofc"], skip_slow=False)
    assert why == "needs /nonexistent/shared/data/2d/sofc_anode_1024.tif (shared data not found: set MICROLAD_SHARED_DATA)"
