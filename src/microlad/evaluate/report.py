"""``report.html``: one self-contained page (PNG figures inlined as base64, no network).

Sections (each an ``<section id=...>``): ``verdict``, ``slices`` (orthogonal mid-slices
of the first volume beside reference patches, one phase colour map), ``render`` (3-D
marching-cubes surface of one phase, scikit-image + matplotlib), ``s2`` (slice S2 per
phase and axis over the reference band), ``transport`` (tortuosity per phase and axis),
``metrics`` (every check, coloured by status), ``notes`` and ``metadata``. A small
script sets ``document.title`` to ``"... images loaded: N/N"`` once every image has
decoded (``naturalWidth > 0``), so a headless browser can check the page.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from microlad.evaluate.evaluation import Evaluation, unit
from microlad.evaluate.metrics import AXES, SPECS

__all__ = ["write_report", "render_report", "SECTIONS"]

SECTIONS = ("verdict", "slices", "render", "s2", "transport", "metrics", "notes", "metadata")
_COLOURS = {"pass": "#c8efc8", "warn": "#ffe3a3", "fail": "#f7b4b4", "n/a": "#eeeeee", "info": "#dde8f7"}
_CMAP = "viridis"


def _phase_cmap(n_phases: int):
    """One discrete colour per phase (the same in every picture of the report)."""
    import matplotlib

    return matplotlib.colormaps[_CMAP].resampled(max(2, n_phases))


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _length(ev: Evaluation) -> tuple[float, str]:
    return ev.options.voxel_size, ev.length_unit


def _slices_figure(ev: Evaluation, volume: np.ndarray) -> str:
    plt = _plt()
    vs, u = _length(ev)
    refs = list(ev.reference.previews)
    rows = 2 if refs else 1
    fig, axes = plt.subplots(rows, 3, figsize=(12, 4.2 * rows), squeeze=False)
    mid = [s // 2 for s in volume.shape]
    views = [("z", volume[mid[0]], ("x", "y")), ("y", volume[:, mid[1]], ("x", "z")), ("x", volume[:, :, mid[2]], ("y", "z"))]
    p_ = ev.options.n_phases
    im = None
    for ax, (name, img, (h, v)) in zip(axes[0], views):
        im = ax.imshow(img, cmap=_phase_cmap(p_), vmin=-0.5, vmax=p_ - 0.5, interpolation="nearest", extent=(0, img.shape[1] * vs, img.shape[0] * vs, 0))
        ax.set_title(f"mid-slice normal to {name}", fontsize=10)
        ax.set_xlabel(f"{h} [{u}]")
        ax.set_ylabel(f"{v} [{u}]")
    for j, ax in enumerate(axes[1] if refs else []):
        if j < len(refs):
            img = refs[j]
            ax.imshow(img, cmap=_phase_cmap(p_), vmin=-0.5, vmax=p_ - 0.5, interpolation="nearest", extent=(0, img.shape[1] * vs, img.shape[0] * vs, 0))
            what = f"reference: slice normal to {AXES[j]}" if ev.reference.kind == "volume" else f"reference patch {j + 1}"
            ax.set_title(what, fontsize=10)
            h, v = views[j][2] if ev.reference.kind == "volume" else ("x", "y")
            ax.set_xlabel(f"{h} [{u}]")
            ax.set_ylabel(f"{v} [{u}]")
        else:
            ax.axis("off")
    fig.suptitle(f"{ev.names[0]} (top)" + (" and the reference (bottom)" if refs else ""))
    cbar = fig.colorbar(im, ax=axes.ravel().tolist(), ticks=range(p_), shrink=0.8)
    cbar.set_label("phase")
    return _png(fig)


def _render_figure(ev: Evaluation, volume: np.ndarray, phase: int) -> str:
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage import measure

    plt = _plt()
    vs, u = _length(ev)
    fig = plt.figure(figsize=(7, 6.5))
    ax = fig.add_subplot(projection="3d")
    mask = np.pad((volume == phase).astype(np.float32), 1)  # closed surfaces at the box faces
    if 0 < mask.sum() < mask.size:
        step = max(1, int(round(max(volume.shape) / 48)))  # a few 10^4 triangles keep matplotlib quick
        verts, faces, _, _ = measure.marching_cubes(mask, level=0.5, step_size=step)
        verts = (verts - 1) * vs
        # matplotlib's (x, y, z) = volume (x, y, z) = array axes (2, 1, 0)
        tri = Poly3DCollection(verts[faces][:, :, ::-1], linewidths=0)
        colour = _phase_cmap(ev.options.n_phases)(phase)
        light = np.abs(np.cross(verts[faces][:, 1] - verts[faces][:, 0], verts[faces][:, 2] - verts[faces][:, 0]))
        shade = 0.45 + 0.55 * (light[:, ::-1] @ np.array([0.3, 0.5, 0.8]) / (np.linalg.norm(light, axis=1) + 1e-12))
        tri.set_facecolor(np.clip(np.array(colour[:3])[None] * shade[:, None], 0, 1))
        ax.add_collection3d(tri)
    z, y, x = (s * vs for s in volume.shape)
    ax.set_xlim(0, x)
    ax.set_ylim(0, y)
    ax.set_zlim(0, z)
    ax.set_box_aspect((x, y, z))
    ax.set_xlabel(f"x [{u}]")
    ax.set_ylabel(f"y [{u}]")
    ax.set_zlabel(f"z [{u}]")
    ax.set_title(f"{ev.names[0]}: phase {phase} (marching cubes)")
    return _png(fig)


def _s2_figure(ev: Evaluation) -> str:
    plt = _plt()
    vs, u = _length(ev)
    p_ = ev.options.n_phases
    r = np.arange(ev.options.cutoff + 1) * vs
    fig, axes = plt.subplots(p_, 3, figsize=(12, 3.1 * p_), squeeze=False, sharex=True)
    ref, ref_std = ev.reference.mean["s2"], ev.reference.std.get("s2")
    for p in range(p_):
        for a in range(3):
            ax = axes[p, a]
            if ref_std is not None and np.isfinite(ref_std[p, a]).all():
                ax.fill_between(r, ref[p, a] - ref_std[p, a], ref[p, a] + ref_std[p, a], color="0.8", label="reference ± std")
            ax.plot(r, ref[p, a], "k-", lw=1.5, label="reference mean")
            m, s = ev.mean["s2"][p, a], ev.std["s2"][p, a]
            ax.plot(r, m, "C1-", lw=1.5, label=f"volumes (n={len(ev.names)})")
            if np.isfinite(s).all():
                ax.fill_between(r, m - s, m + s, color="C1", alpha=0.3)
            ax.set_title(f"phase {p}, slices normal to {AXES[a]}: error {100 * ev.mean['s2_error'][p, a]:.2f} %", fontsize=9)
            ax.set_ylabel("S2(r)")
            if p == p_ - 1:
                ax.set_xlabel(f"r [{u}]")
            if p == 0 and a == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _transport_figure(ev: Evaluation) -> str | None:
    if "tortuosity" not in ev.mean:
        return None
    plt = _plt()
    p_ = ev.options.n_phases
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / 3
    for a in range(3):
        xs = np.arange(p_) + (a - 1) * width
        ax.bar(xs, ev.mean["tortuosity"][:, a], width, yerr=np.nan_to_num(ev.std["tortuosity"][:, a]), label=f"volumes, {AXES[a]}", color=f"C{a}")
        if "tortuosity" in ev.reference.mean:
            ax.errorbar(xs, ev.reference.mean["tortuosity"][:, a], yerr=np.nan_to_num(ev.reference.std.get("tortuosity", np.zeros((p_, 3)))[:, a]),
                        fmt="k_", ms=14, label="reference" if a == 0 else None)
    ax.set_ylim(bottom=0)
    ax.set_xticks(range(p_))
    ax.set_xticklabels([f"phase {p}" for p in range(p_)])
    ax.set_xlabel("phase (bars: transport along z, y, x)")
    ax.set_ylabel("tortuosity factor [-]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _overview_figure(ev: Evaluation) -> str | None:
    """Deviation of every rated metric from the reference, in reference spreads (S2 errors:
    in tolerances), one bar per metric and phase (worst axis), coloured by status."""
    order = {"fail": 0, "warn": 1, "pass": 2}
    rows: dict[tuple[str, Any], tuple[float, str]] = {}
    for c in ev.checks:
        if c.status not in order:
            continue
        if c.metric in ("s2_error", "s2_small_r"):
            dev = c.value / c.tolerance if c.tolerance > 0 else 0.0
        else:
            sigma = max(c.reference_std if math.isfinite(c.reference_std) else 0.0, 0.01 * abs(c.reference))
            dev = (c.value - c.reference) / sigma if sigma > 0 else 0.0
        key = (c.metric, c.phase)
        if key not in rows or abs(dev) > abs(rows[key][0]):
            rows[key] = (dev, c.status)
    if not rows:
        return None
    plt = _plt()
    labels = [f"{SPECS[m].label}" + ("" if p is None else f", phase {p}") for m, p in rows]
    devs = [v[0] for v in rows.values()]
    colours = [{"pass": "#4caf50", "warn": "#f0a500", "fail": "#d9534f"}[v[1]] for v in rows.values()]
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, np.clip(devs, -8, 8), color=colours)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    for x in (-4, -2, 2, 4):
        ax.axvline(x, color="0.7", lw=0.8, ls="--")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlim(-8.5, 8.5)
    ax.set_xlabel("deviation from the reference [spreads; S2 errors: error / tolerance] (clipped at ±8)")
    fig.tight_layout()
    return _png(fig)


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _num(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.4g}"


def _metrics_table(ev: Evaluation) -> str:
    rows = []
    for c in ev.checks:
        spec = SPECS[c.metric]
        un = unit(spec.length_power, ev.length_unit)
        ref = f"≤ {_num(c.tolerance)} (tolerance)" if c.metric in ("s2_error", "s2_small_r") else f"{_num(c.reference)} ± {_num(c.reference_std)}"
        rows.append(
            f'<tr><td title="{html.escape(spec.description)}">{html.escape(spec.label)}</td><td>{"" if c.phase is None else c.phase}</td>'
            f'<td>{c.axis or ""}</td><td>{html.escape(un)}</td><td>{_num(c.value)} ± {_num(c.value_std)}</td><td>{ref}</td>'
            f'<td class="st" style="background:{_COLOURS[c.status]}">{c.status}</td></tr>'
        )
    head = "<tr><th>metric</th><th>phase</th><th>axis</th><th>unit</th><th>volumes: mean ± std</th><th>reference: mean ± spread</th><th>status</th></tr>"
    return f'<table class="metrics">{head}{"".join(rows)}</table>'


def _kv_table(items: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.title = 'microlad evaluate report - images loaded: ' + ok + '/' + imgs.length;
  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
});
</script>"""

_STYLE = """<style>
body{font-family:sans-serif;margin:1.5em auto;max-width:1200px;color:#222}
h1{font-size:1.5em} h2{border-bottom:1px solid #ccc;font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:0.85em} td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
.metrics td:nth-child(5),.metrics td:nth-child(6){font-family:monospace}
.verdict{font-size:1.3em;padding:0.4em 0.8em;display:inline-block;border-radius:4px}
img{max-width:100%;border:1px solid #eee}
</style>"""


def render_report(ev: Evaluation, volumes: Sequence[np.ndarray], *, render_phase: int | None = None) -> str:
    """The report page as a string; ``volumes`` are the evaluated arrays (the first is shown).

    ``render_phase``: phase of the 3-D rendering (default: the one with the smallest VF).
    """
    vol = np.asarray(volumes[0])
    if render_phase is None:
        render_phase = int(np.argmin(ev.mean["vf"]))
    counts = {s: sum(c.status == s for c in ev.checks) for s in ("pass", "warn", "fail", "n/a", "info")}
    ref = ev.reference
    ofig = _overview_figure(ev)
    overview = _img(ofig, "deviation of every metric") if ofig else "<p>No metric has a reference to compare with.</p>"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>microlad evaluate report</title>", _STYLE, "</head><body>",
        "<h1>microlad evaluate</h1>",
        f"<p>{len(ev.names)} volume(s) of {' x '.join(map(str, ev.shape))} voxels (z, y, x), voxel size {ev.options.voxel_size:g} {html.escape(ev.length_unit)}, "
        f"against a <b>{ref.kind}</b> reference ({html.escape(', '.join(ref.sources) or '-')}; {ref.n_samples} samples of "
        f"{' x '.join(map(str, ref.sample_shape))}). S2 non-periodic up to r = {ev.options.cutoff} voxels.</p>",
        '<section id="verdict"><h2>Verdict</h2>',
        f'<span class="verdict" style="background:{_COLOURS[ev.verdict]}">{ev.verdict.upper()}</span> '
        f"<p>{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail, {counts['n/a']} without reference. "
        f"S2 error (paper metric, max over phases and axes): <b>{100 * ev.s2_error:.2f} %</b>; per volume: "
        + ", ".join(f"{100 * e:.2f} %" for e in ev.s2_error_per_volume) + "</p>", overview, "</section>",
        '<section id="slices"><h2>Orthogonal slices</h2>', _img(_slices_figure(ev, vol), "mid-slices and reference patches"),
        "" if ref.previews else "<p>The model stores no reference images; pass <code>--reference IMAGE</code> to show patches.</p>",
        "</section>",
        f'<section id="render"><h2>3-D rendering (phase {render_phase})</h2>', _img(_render_figure(ev, vol, render_phase), "3-D rendering"), "</section>",
        '<section id="s2"><h2>Two-point correlation S2 per phase and axis</h2>', _img(_s2_figure(ev), "S2 curves"),
        "<p>Grey band: reference mean ± std over its samples (single patches or sub-volumes); orange: mean ± std over the volumes.</p></section>",
        '<section id="transport"><h2>Transport</h2>',
    ]
    tfig = _transport_figure(ev)
    parts.append(_img(tfig, "tortuosity") if tfig else "<p>Transport not computed (<code>--no-transport</code>).</p>")
    parts += [
        "</section>",
        f'<section id="metrics"><h2>All metrics</h2><p>Reference: mean ± spread, the std of the mean over a group of '
        f"{ref.group_size} reference sample(s), about what one evaluated volume holds. pass: within 2 spreads (4: warn, beyond: fail); "
        "S2 errors against the 95th percentile of the groups' own errors (twice: warn). Hover a metric for its definition.</p>",
        _metrics_table(ev), "</section>",
        '<section id="notes"><h2>Notes</h2><ul>' + "".join(f"<li>{html.escape(n)}</li>" for n in ref.notes) + "</ul></section>",
        '<section id="metadata"><h2>Run metadata</h2>',
        _kv_table({**ev.metadata, **{f"time {k} [s]": f"{v:.2f}" for k, v in ev.timings.items()}}), "</section>",
        _SCRIPT, "</body></html>",
    ]
    return "\n".join(parts)


def write_report(path: str | Path, ev: Evaluation, volumes: Sequence[np.ndarray], *, overwrite: bool = True) -> Path:
    """Write :func:`render_report` to ``path`` atomically."""
    from microlad.io import atomic_path

    path = Path(path)
    text = render_report(ev, volumes)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
