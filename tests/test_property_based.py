"""Property-based: random shapes, dtypes and values into ``read_image`` and ``properties``
give a valid result or a clean one-line error, never a traceback."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cli_helpers import run_cli
from microlad.errors import MicroladError

DTYPES = st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.int64, np.uint64, np.float32, np.float64, np.bool_])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(SHAPES)
    if dtype.kind == "f":
        elements = st.one_of(st.sampled_from([0.0, 1.0, 2.0]), st.floats(-5, 5, width=dtype.itemsize * 8), st.just(math.nan))
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.one_of(st.integers(0, 3), st.integers(int(info.min), int(info.max)))
    return draw(hnp.arrays(dtype, shape, elements=elements))


def _check_report(rep: dict, labels: np.ndarray) -> None:
    assert rep["shape"] == list(labels.shape)
    c = rep["s2_cutoff"]
    assert c == min(labels.shape) // 2
    fractions = [p["volume_fraction"] for p in rep["phases"].values()]
    assert math.isclose(sum(fractions), 1.0, abs_tol=1e-9)
    for key, p in rep["phases"].items():
        assert fractions[int(key)] == pytest.approx(float(np.mean(labels == int(key))))
        for curve in p["s2"].values():
            assert len(curve) == c + 1 and all(-1e-9 <= v <= 1 + 1e-9 for v in curve)
        for a, tau in p.get("tortuosity", {}).items():
            assert tau is None or tau >= 1.0 - 1e-6  # tortuosity factor of a phase is at least 1 (straight paths)
    json.dumps(rep)  # serialisable


@FAST
@given(arr=arrays())
def test_read_image_and_properties_never_raise_anything_but_microlad_errors(tmp_path_factory, arr):
    from microlad.evaluate import format_properties, properties
    from microlad.io import read_image

    path = tmp_path_factory.mktemp("h") / "a.npy"
    np.save(path, arr)
    try:
        seg = read_image(path)
    except MicroladError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert seg.labels.dtype == np.uint8 and seg.labels.ndim in (2, 3)
    assert seg.labels.max() + 1 == seg.n_phases >= 2
    try:
        rep = properties(seg.labels, grey_values=seg.grey_values)
    except MicroladError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    _check_report(rep, seg.labels)
    assert format_properties(rep)


@FAST
@given(arr=arrays(), periodic=st.booleans())
def test_properties_command_gives_a_report_or_one_error_line(tmp_path_factory, capsys, arr, periodic):
    path = tmp_path_factory.mktemp("c") / "a.npy"
    np.save(path, arr)
    res = run_cli(capsys, "properties", path, "--no-progress", *([] if periodic else ["--non-periodic"]))
    if res.exit_code == 0:
        assert res.stdout.startswith(("2D image", "3D volume"))
    else:
        assert res.exit_code == 2
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "unexpected" not in lines[0], res.stderr
