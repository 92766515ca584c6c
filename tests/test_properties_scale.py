"""Issue #15, scale: the matrix-free grid solver, memory checks, sub-volumes, bounded-memory
helpers (chunked counts, slab marching cubes, lookup-table phase mapping)."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli
from microlad.errors import InputError
from microlad.physics import solve_transport
from microlad.synthetic import random_field_labels


def _props_module():
    return importlib.import_module("microlad.evaluate.properties")


@pytest.fixture(scope="module")
def vol():
    return random_field_labels((28, 32, 36), fractions=(0.6, 0.4), correlation_length=2.5, seed=5)


# ------------------------------------------------------------------ grid solver


@pytest.mark.parametrize("phase", [0, 1])
def test_grid_solver_matches_the_assembled_solver(vol, phase):
    for axis in range(3):
        ref = solve_transport(vol, phase=phase, axis=axis, rtol=1e-7, flux_rtol=1e-5, method="amg", return_field=True)
        got = solve_transport(vol, phase=phase, axis=axis, rtol=1e-7, flux_rtol=1e-5, method="grid", return_field=True)
        assert got.converged and got.residual <= 1e-7 and got.flux_imbalance <= 1e-5
        assert got.tortuosity == pytest.approx(ref.tortuosity, rel=1e-5)
        assert got.volume_fraction == pytest.approx(float(np.mean(vol == phase)))
        assert np.array_equal(np.isnan(got.concentration), np.isnan(ref.concentration))  # same solved cells
        assert np.nanmax(np.abs(got.concentration - ref.concentration)) < 1e-4


def test_grid_solver_analytic_cases():
    # straight channels along z: tau = 1 exactly; a uniform block: D_eff = 1
    v = np.zeros((12, 9, 10), np.uint8)
    v[:, 2:5, 3:7] = 1
    res = solve_transport(v, phase=1, axis=0, method="grid")
    assert res.tortuosity == pytest.approx(1.0, rel=1e-6)
    assert res.effective_diffusivity == pytest.approx(v.mean(), rel=1e-6)
    # ... and they do not connect the faces normal to y: inf, with a warning
    from microlad.physics import PercolationWarning

    with pytest.warns(PercolationWarning):
        assert solve_transport(v, phase=1, axis=1, method="grid").tortuosity == float("inf")
    # series layers normal to the flow, D = 1 cells only: a one-cell-thick wall with one hole
    w = np.ones((6, 5, 5), np.uint8)
    w[3] = 0
    w[3, 2, 2] = 1
    ref = solve_transport(w, phase=1, axis=0, method="direct")
    assert solve_transport(w, phase=1, axis=0, method="grid").tortuosity == pytest.approx(ref.tortuosity, rel=1e-6)


def test_grid_solver_matches_taufactor(berea):
    tf = pytest.importorskip("taufactor")
    crop = np.ascontiguousarray(berea[:48, :48, :48])
    pore = (crop == 0).astype(np.uint8)
    solver = tf.Solver(pore, device="cpu")
    solver.solve(verbose=False)
    ref = float(np.ravel(np.asarray(solver.tau))[0])
    assert solve_transport(crop, phase=0, axis=0, method="grid").tortuosity == pytest.approx(ref, rel=0.01)


@pytest.mark.parametrize("kwargs", [dict(periodic=True), dict(diffusivities={1: 1.0}), dict(x0=np.zeros((6, 6, 6)))])
def test_grid_solver_refuses_what_it_does_not_solve(kwargs):
    with pytest.raises(InputError, match="grid"):
        solve_transport(np.ones((6, 6, 6), np.uint8), phase=1, axis=0, method="grid", **kwargs)
    with pytest.raises(InputError, match="grid"):
        solve_transport(np.ones((6, 6), np.uint8), phase=1, axis=0, method="grid")


# ------------------------------------------------------------------ the report


def test_report_uses_the_grid_solver_for_large_volumes(vol, monkeypatch):
    from microlad.evaluate import properties

    mod = _props_module()
    small = properties(vol, workers=1)
    monkeypatch.setattr(mod, "GRID_MIN_VOXELS", 1000)
    assert mod.uses_grid_solver(vol.shape) and not mod.uses_grid_solver(vol.shape[1:])
    calls = []
    real = solve_transport

    def spy(*a, **k):
        calls.append(k["method"])
        return real(*a, **k)

    monkeypatch.setattr("microlad.physics.solve_transport", spy)
    big = properties(vol, workers=1)
    assert set(calls) == {"grid"}
    threaded = properties(vol, workers=2)  # threads share the volume
    assert threaded == big
    for p in ("0", "1"):
        for a in "zyx":
            t_old, t_new = small["phases"][p]["tortuosity"][a], big["phases"][p]["tortuosity"][a]
            assert (t_old is None and t_new is None) or t_new == pytest.approx(t_old, rel=2e-3)


def test_transport_memory_is_checked_before_any_work(vol, tmp_path, capsys, monkeypatch):
    from microlad.evaluate import properties

    with pytest.raises(InputError, match="--subvolume"):
        properties(vol, memory_limit=10_000)
    assert properties(vol, memory_limit=10_000, transport=False)["n_phases"] == 2
    path = tmp_path / "v.npy"
    np.save(path, vol)
    mod = _props_module()
    called = []
    monkeypatch.setattr(mod.d, "specific_surface_area", lambda *a, **k: called.append(1))
    res = run_cli(capsys, "properties", path, "--memory-gb", "0.00001", "--json", tmp_path / "r.json")
    assert_one_line_error(res, "needs about", "--subvolume", "--no-transport")
    assert res.exit_code == 2 and not called and not (tmp_path / "r.json").exists()


def test_the_default_worker_count_respects_the_memory(vol, monkeypatch):
    mod = _props_module()
    seen = []
    monkeypatch.setattr(mod._parallel, "solve_tasks", lambda labels, tasks, solve, *, workers, on_done=None, threads=False:
                        seen.append(workers) or [(1.0, 1.0)] * len(tasks))
    per = mod.transport_memory(int(np.count_nonzero(vol == 0)), vol.shape)
    mod.properties(vol, workers=2, memory_limit=int(1.5 * per))
    mod.properties(vol, workers=2, memory_limit=3 * per)
    assert seen == [1, 2]


def test_subvolume_evaluates_the_box(vol, tmp_path, capsys):
    from microlad.evaluate import properties

    path = tmp_path / "v.npy"
    np.save(path, vol)
    js = tmp_path / "r.json"
    res = run_cli(capsys, "properties", path, "--subvolume", "2:20,:,-10:", "--json", js, "--no-progress")
    assert res.exit_code == 0, res
    rep = json.loads(js.read_text())
    assert rep["subvolume"] == [[2, 20], [0, 32], [26, 36]]
    box = np.ascontiguousarray(vol[2:20, :, 26:])
    ref = properties(box)
    assert rep["shape"] == [18, 32, 10]
    assert rep["phases"] == json.loads(json.dumps(ref["phases"]))
    for bad, msg in [("0:5,0:5", "3 comma-separated"), ("0:1,:,:", "fewer than 2"), ("a:b,:,:", "START:STOP"), ("40:50,:,:", "fewer than 2")]:
        assert_one_line_error(run_cli(capsys, "properties", path, "--subvolume", bad), msg)


def test_progress_bar_follows_the_solves(vol, capsys):
    from microlad.evaluate import properties

    capsys.readouterr()
    properties(vol, progress=True, workers=1)
    err = capsys.readouterr().err
    assert "descriptors" in err and "transport solves" in err


# ------------------------------------------------------------------ bounded-memory helpers


def test_phase_counts_in_chunks(monkeypatch):
    mod = _props_module()
    monkeypatch.setattr(mod, "_COUNT_CHUNK", 7)
    a = np.random.default_rng(0).integers(0, 4, (5, 6, 7)).astype(np.uint8)
    assert mod.phase_counts(a).tolist() == np.bincount(a.ravel()).tolist()
    assert mod.phase_counts(a, 6).tolist() == np.bincount(a.ravel(), minlength=6).tolist()


def test_slab_marching_cubes_gives_the_whole_volume_area(monkeypatch):
    from skimage import measure

    from microlad.descriptors import _surface

    v = random_field_labels((30, 20, 24), fractions=(0.5, 0.5), correlation_length=3.0, seed=8) == 1
    verts, faces, _, _ = measure.marching_cubes(v.astype(np.float32), level=0.5)
    whole = measure.mesh_surface_area(verts, faces)
    for slab in (20 * 24, 20 * 24 * 7, 1 << 23):
        monkeypatch.setattr(_surface, "_MESH_SLAB_VOXELS", slab)
        assert _surface._mesh_area(v) == pytest.approx(whole, rel=1e-6)


@pytest.mark.parametrize("dtype, lo, hi", [(np.uint8, 0, 255), (np.int8, -100, 100), (np.uint16, 1000, 60000), (np.int64, -(2**40), 2**40)])
def test_lookup_table_mapping_equals_np_unique(dtype, lo, hi, monkeypatch):
    from microlad.io import _read, map_phases

    monkeypatch.setattr(_read, "_CHUNK", 11)
    rng = np.random.default_rng(1)
    values = np.sort(rng.choice(np.arange(lo, hi, max(1, (hi - lo) // 50)), 5, replace=False)).astype(dtype)
    arr = values[rng.integers(0, 5, (9, 10, 11))]
    seg = map_phases(arr)
    uniq, inv = np.unique(arr, return_inverse=True)
    assert seg.grey_values == tuple(float(v) for v in uniq)
    assert np.array_equal(seg.labels, inv.reshape(arr.shape)) and seg.labels.dtype == np.uint8


def test_the_numpy_report_does_not_load_torch():
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    code = ("import sys, numpy as np; import microlad.cli.properties, microlad.io; from microlad.evaluate import properties; "
            "properties(np.eye(8, dtype=np.uint8)[None].repeat(4, 0)); assert 'torch' not in sys.modules; "
            "from microlad.physics import effective_diffusivity; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}, timeout=120)
