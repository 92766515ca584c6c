"""SDS guidance acceptance (issue #10): VF, S2, surface-area and transport control.

Usage::

    python bench/bench_guidance.py MODEL_DIR IMAGE --name NAME [--sets vf,s2,sa,deff,tau]
        [--seeds 10] [--size 64] [--steps 60] [--phases 0 1 2] [--deff-factors 1.5 0.5]
        [--deff-target PHASE=VALUE] [--tau-rock berea_400.npz --tau PHASE@AXIS] [--seed 2000]

Sets (each volume uses seed ``--seed + i``; targets as in the issue / the paper):

* ``vf``: per phase, target = the largest VF of that phase over 256 random 64² crops of
  the training image; pass: |VF − target| <= 0.01.
* ``s2``: target = the training S2 stored in the model (``--s2-target train``, the 64²
  patch statistics), or the S2 of IMAGE itself (``--s2-target image``: ``s2=IMAGE``, the
  curve the paper metric compares with); paper metric (``s2_fidelity``:
  slice S2 of all volumes averaged, against the training image) of the guided and of
  the unguided (``reconstruct``, same seeds) sets, plus the largest pointwise
  |ΔS2(r)|/S2(0) for r <= 8 (per volume, max).
* ``sa``: per phase, target = 4/π × the largest 2D boundary length per area over the
  crops (stereology: the 3D area per volume a medium with those sections has); pass:
  within 5 % (report's marching-cubes estimator on the final labels).
* ``deff``: along x; per phase, targets = ``--deff-factors`` × the unguided volume's D_eff
  (same seed), or ``--deff-target PHASE=VALUE``; re-measured with TauFactor on the final
  labels; pass: within 10 %, and moved in the requested direction.
* ``tau``: ``--tau PHASE@AXIS`` targeted to the tortuosity of ``--tau-rock`` (a 3D label
  volume, e.g. berea_400.npz, measured with microlad.physics); reports the surface area
  and the other axes' τ before/after.

Every set also reports the VAE round-trip pixel accuracy (every 4th slice per axis) of
the guided and unguided volumes, and the time per volume and per step.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (NO_PAPER, PAPER_S2_CARBONATE, PAPER_S2_SOFC, PAPER_SDS_DEFF, PAPER_SDS_VF_SA, command_line, machine,  # noqa: E402
                     model_image_parser, provenance, save)

AX = "zyx"


def crop_stats(ref: np.ndarray, n_phases: int, size: int = 64, n: int = 256, seed: int = 0) -> dict:
    """Largest VF and 2D boundary length per area of each phase over random crops."""
    from microlad import descriptors as nd

    rng = np.random.default_rng(seed)
    h, w = ref.shape
    vf, la = np.zeros((n, n_phases)), np.zeros((n, n_phases))
    for i in range(n):
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        c = ref[y:y + size, x:x + size]
        for p in range(n_phases):
            vf[i, p] = (c == p).mean()
            la[i, p] = nd.specific_surface_area(c, phase=p)
    return {"vf_max": vf.max(0).tolist(), "vf_mean": vf.mean(0).tolist(), "la_max": la.max(0).tolist(), "la_mean": la.mean(0).tolist()}


def taufactor_deff(labels: np.ndarray, phase: int, axis: int) -> float:
    """D_eff/D_bulk = ε/τ of ``phase`` along ``axis`` from TauFactor (CPU, defaults)."""
    import taufactor as tf

    mask = np.ascontiguousarray(np.moveaxis((labels == phase).astype(np.uint8), axis, 0))
    if not mask.any():
        return 0.0
    s = tf.Solver(mask, device="cpu")
    s.solve(verbose=False)
    tau = float(np.ravel(np.asarray(s.tau))[0])
    return float(mask.mean() / tau) if np.isfinite(tau) and tau > 0 else 0.0


class Bench:
    def __init__(self, model, ref, args) -> None:
        self.model, self.ref, self.args = model, ref, args
        self.shape = (args.size,) * 3
        self.seeds = [args.seed + i for i in range(args.seeds)]
        self._unguided: dict[int, np.ndarray] = {}

    def unguided(self, seed: int) -> np.ndarray:
        if seed not in self._unguided:
            init = {"init": self.args.init} if self.args.init else {}
            self._unguided[seed] = self.model.reconstruct(self.shape, n=1, seed=seed, progress=False, **init)[0].labels
        return self._unguided[seed]

    def realism(self, labels: np.ndarray) -> float:
        from microlad.guidance import roundtrip_accuracy

        return roundtrip_accuracy(self.model.vae, labels)["mean"]

    def run(self, targets: dict, seed: int, **kw):
        a = self.args
        t0 = time.perf_counter()
        if a.calibrate_every is not None:
            kw.setdefault("calibrate_every", a.calibrate_every)
        if a.checkpoint_every is not None:
            kw.setdefault("checkpoint_every", a.checkpoint_every)
        if a.init:
            kw.setdefault("init", a.init)
        res = self.model.generate(self.shape, targets, seed=seed, steps=a.steps, progress=False,
                                  weights=a.weight or None, **kw)[0]
        return res, time.perf_counter() - t0

    def row(self, res, wall: float, seed: int) -> dict:
        return {"seed": seed, "terms": [t.to_dict() for t in res.terms], "wall_s": round(wall, 2),
                "per_step_s": round(res.timings["per_step"], 3),
                "timings": {k: round(v, 2) for k, v in res.timings.items()},
                "realism": round(self.realism(res.labels), 4), "realism_unguided": round(self.realism(self.unguided(seed)), 4)}


def shape_stats(labels: np.ndarray, ref: np.ndarray, n_phases: int) -> dict:
    """What a simulation sees besides S2, per phase: slice perimeter density (mean over the three
    slicing axes) relative to the image's, 3D surface area, number of axes spanned."""
    from microlad import descriptors as nd

    per = [float(np.mean([nd.slice_perimeter_density(labels, phase=p, axis=a) for a in range(3)])
                 / nd.slice_perimeter_density(ref, phase=p) - 1) for p in range(n_phases)]
    return {"perimeter_rel": per, "sa": [float(nd.specific_surface_area(labels, phase=p)) for p in range(n_phases)],
            "spans": [int(sum(nd.percolating_axes(labels, phase=p))) for p in range(n_phases)]}


def set_vf(b: Bench, stats: dict) -> dict:
    out = {}
    for p in b.args.phases:
        target = round(stats["vf_max"][p], 4)
        rows = []
        for s in b.seeds:
            res, wall = b.run({f"vf:{p}": target}, s)
            r = b.row(res, wall, s)
            r["pass"] = abs(r["terms"][0]["achieved"] - target) <= 0.01
            sds = r["terms"][0].get("before_settle")  # what SDS alone reached (exact_vf settles it afterwards)
            r["pass_sds_alone"] = None if sds is None else abs(sds - target) <= 0.01
            rows.append(r)
            print(f"vf:{p} seed {s}: {res.summary()} (SDS alone {sds}; {wall:.0f} s, realism {r['realism']:.4f} vs {r['realism_unguided']:.4f})", flush=True)
        out[f"vf:{p}"] = {"target": target, "rows": rows, "passed": sum(r["pass"] for r in rows), "n": len(rows),
                          "passed_sds_alone": sum(bool(r["pass_sds_alone"]) for r in rows)}
    return out


def set_sa(b: Bench, stats: dict) -> dict:
    out = {}
    for p in b.args.phases:
        target = round(4 / np.pi * stats["la_max"][p], 5)
        rows = []
        for s in b.seeds:
            res, wall = b.run({f"sa:{p}": target}, s)
            r = b.row(res, wall, s)
            r["pass"] = abs(r["terms"][0]["achieved"] / target - 1) <= 0.05
            rows.append(r)
            print(f"sa:{p} seed {s}: {res.summary()} ({wall:.0f} s, realism {r['realism']:.4f} vs {r['realism_unguided']:.4f})", flush=True)
        out[f"sa:{p}"] = {"target": target, "rows": rows, "passed": sum(r["pass"] for r in rows), "n": len(rows)}
    return out


def set_s2(b: Bench) -> dict:
    from microlad.evaluate import s2_fidelity

    rows, guided = [], []
    for s in b.seeds:
        kw = {}
        if b.args.match_vf_image:  # the finish matches the image's phase fractions (S2(0) of the target)
            kw["match_vf"] = np.bincount(np.asarray(b.ref).ravel(), minlength=b.model.n_phases) / np.asarray(b.ref).size
        if b.args.polish is not None:
            kw["polish"] = b.args.polish
        res, wall = b.run({"s2": "train" if b.args.s2_target == "train" else str(b.args.image)}, s, **kw)
        row = b.row(res, wall, s)
        row["shape"] = {"guided": shape_stats(res.labels, b.ref, n_p := b.model.n_phases),
                        "unguided": shape_stats(b.unguided(s), b.ref, n_p)}
        row["polish"] = dict(res.polish)
        rows.append(row)
        guided.append(res.labels)
        print(f"s2 seed {s}: {res.summary()} ({wall:.0f} s)", flush=True)
    n_p = b.model.n_phases
    fg = s2_fidelity(guided, [b.ref], n_phases=n_p)
    fu = s2_fidelity([b.unguided(s) for s in b.seeds], [b.ref], n_phases=n_p)
    r = 9  # pointwise error for r <= 8 of the set-averaged curves
    point = lambda f: float(np.max(np.abs(f.s2_generated[:, :, :r] - f.s2_reference[:, None, :r]) / f.s2_reference[:, None, :1]))  # noqa: E731
    return {"rows": rows, "guided_max_error": fg.max_error, "unguided_max_error": fu.max_error,
            "guided_signed": fg.signed_errors.tolist(), "unguided_signed": fu.signed_errors.tolist(),
            "guided_pointwise_r8": point(fg), "unguided_pointwise_r8": point(fu), "n": len(rows),
            "target": b.args.s2_target}


def set_deff(b: Bench) -> dict:
    a = b.args
    cases = []
    if a.deff_target:
        for spec in a.deff_target:
            p, v = spec.split("=")
            cases.append((int(p), None, float(v)))
    else:
        cases = [(p, f, None) for p in a.phases for f in a.deff_factors]
    out = {}
    for p, factor, value in cases:
        rows = []
        for s in b.seeds[: a.deff_seeds or None]:
            base = taufactor_deff(b.unguided(s), p, 2)
            target = value if value is not None else factor * base
            if not 0 < target <= 1:
                print(f"deff:{p}@x seed {s}: target {target:g} outside (0, 1], skipped", flush=True)
                continue
            res, wall = b.run({f"deff:{p}@x": round(target, 6)}, s, property_every=a.property_every)
            got = taufactor_deff(res.labels, p, 2)
            r = b.row(res, wall, s)
            r.update(unguided_taufactor=base, achieved_taufactor=got, target=target,
                     within_10pct=abs(got / target - 1) <= 0.10, right_direction=(got - base) * (target - base) > 0)
            rows.append(r)
            print(f"deff:{p}@x ×{factor} seed {s}: unguided {base:.4f} target {target:.4f} -> {got:.4f} (TauFactor) "
                  f"({wall:.0f} s, realism {r['realism']:.4f} vs {r['realism_unguided']:.4f})", flush=True)
        key = f"deff:{p}@x" + (f" x{factor}" if factor is not None else f"={value}")
        out[key] = {"rows": rows, "within_10pct": sum(r["within_10pct"] for r in rows),
                    "right_direction": sum(r["right_direction"] for r in rows), "n": len(rows)}
    return out


def set_tau(b: Bench) -> dict:
    from microlad import descriptors as nd
    from microlad.physics import solve_transport

    a = b.args
    p, ax = a.tau.split("@")
    p, axis = int(p), AX.index(ax)
    if a.tau_rock.endswith(".npz"):
        with np.load(a.tau_rock) as z:
            rock = z[z.files[0]]
    else:
        rock = np.load(a.tau_rock)
    target = float(solve_transport(rock.astype(np.uint8), phase=p, axis=axis, rtol=1e-4, flux_rtol=1e-2, method="grid").tortuosity)
    targets = {f"tau:{p}@{ax}": round(target, 4)}
    if a.tau_with_vf:  # the rock's fraction of the phase pinned too (guidance starts unmatched)
        targets[f"vf:{p}"] = round(float((rock == p).mean()), 4)
    rows = []
    for s in b.seeds:
        res, wall = b.run(targets, s, property_every=a.property_every)
        r = b.row(res, wall, s)
        before, after = b.unguided(s), res.labels
        r["tau_all_axes"] = {k: {AX[i]: float(solve_transport(v, phase=p, axis=i, rtol=1e-4, flux_rtol=1e-2, method="grid").tortuosity)
                                 for i in range(3)}
                             for k, v in (("unguided", before), ("guided", after))}
        r["sa"] = {k: float(nd.specific_surface_area(v, phase=p)) for k, v in (("unguided", before), ("guided", after))}
        r["fraction"] = {k: float((v == p).mean()) for k, v in (("unguided", before), ("guided", after))}
        r["pass"] = abs(r["tau_all_axes"]["guided"][ax] / target - 1) <= 0.10
        rows.append(r)
        print(f"tau:{p}@{ax} seed {s}: target {target:.3f}: {r['tau_all_axes']} sa {r['sa']} ({wall:.0f} s)", flush=True)
    return {"target": target, "targets": targets, "rock_fraction": float((rock == p).mean()), "rows": rows,
            "passed": sum(r["pass"] for r in rows), "n": len(rows)}


def paper_line(args, res: dict) -> str:
    """The paper's figures for the sets in ``res`` (its times are for 500 steps on a GPU; ours per volume in the table)."""
    out = []
    if "vf" in res or "sa" in res:
        out.append(PAPER_SDS_VF_SA)
    if "s2" in res:
        name = f"{args.name} {args.model_dir}".lower()
        out.append("S2-guided max S2 error, " + (PAPER_S2_CARBONATE if "carbonate" in name else PAPER_S2_SOFC if "sofc" in name
                                                 else f"{PAPER_S2_CARBONATE}; {PAPER_S2_SOFC}"))
    if "deff" in res:
        out.append(PAPER_SDS_DEFF)
    if "tau" in res:
        out.append(f"τ targets: {NO_PAPER}")
    return "; ".join(out) + f"; ours: {args.steps} steps on this CPU, below" if out else NO_PAPER


def markdown(name: str, args, res: dict, info: dict) -> str:
    L = [f"### Guidance acceptance: {name} ({args.size}³, {args.steps} steps, seeds {args.seed}..{args.seed + args.seeds - 1})", "",
         provenance(start=info.get("start"), end=info, command=info.get("command"), paper=paper_line(args, res)), ""]

    def real(rows):
        return f"{np.mean([r['realism'] for r in rows]):.4f} / {np.mean([r['realism_unguided'] for r in rows]):.4f}"

    def timing(rows):
        return f"{np.mean([r['wall_s'] for r in rows]):.0f} s ({np.mean([r['per_step_s'] for r in rows]):.2f} s/step)"

    if "vf" in res or "sa" in res:
        L += ["| target | n | start (mean) | achieved (mean ± sd) | pass | SDS alone: reached (mean ± sd), pass | realism guided / unguided | time per volume |",
              "|---|---|---|---|---|---|---|---|"]
        for key in ("vf", "sa"):
            for k, v in res.get(key, {}).items():
                ach = [r["terms"][0]["achieved"] for r in v["rows"]]
                st = [r["terms"][0]["start"] for r in v["rows"]]
                sds = [r["terms"][0].get("before_settle") for r in v["rows"]]
                alone = (f"{np.mean(sds):.4f} ± {np.std(sds):.4f}, {v.get('passed_sds_alone', 0)}/{v['n']}"
                         if sds and all(x is not None for x in sds) else "–")
                L.append(f"| {k}={v['target']:g} | {v['n']} | {np.mean(st):.4f} | {np.mean(ach):.4f} ± {np.std(ach):.4f} | "
                         f"{v['passed']}/{v['n']} | {alone} | {real(v['rows'])} | {timing(v['rows'])} |")
        L.append("")
    if "s2" in res:
        s = res["s2"]
        L += [f"S2 guided (s2={'train' if s.get('target', 'train') == 'train' else Path(args.image).name}), n = {s['n']}: paper max error {100 * s['guided_max_error']:.2f} % "
              f"(unguided same seeds {100 * s['unguided_max_error']:.2f} %); largest pointwise |ΔS2(r)|/S2(0), r ≤ 8: "
              f"{100 * s['guided_pointwise_r8']:.2f} % (unguided {100 * s['unguided_pointwise_r8']:.2f} %); "
              f"realism guided / unguided {real(s['rows'])}; time {timing(s['rows'])}.", ""]
        rows = s["rows"]
        if rows and "shape" in rows[0]:
            n_p = len(rows[0]["shape"]["guided"]["sa"])
            ms = lambda v: f"{np.mean(v):+.1f} ± {np.std(v, ddof=1) / np.sqrt(len(v)):.1f}" if len(v) > 1 else f"{v[0]:+.1f}"  # noqa: E731
            per_vol = [r["terms"][0]["achieved"] for r in rows]
            before = [r["terms"][0].get("before_polish") for r in rows]
            L += [f"Per volume S2 error {100 * np.mean(per_vol):.2f} ± {100 * np.std(per_vol, ddof=1) / np.sqrt(len(per_vol)):.2f} % (max {100 * max(per_vol):.2f})"
                  + (f", before the polish {100 * np.mean(before):.2f} ± {100 * np.std(before, ddof=1) / np.sqrt(len(before)):.2f} %" if all(x is not None for x in before) else "")
                  + (f"; polish: {np.mean([r['polish']['flipped'] for r in rows]) / args.size ** 3 * 100:.1f} % of the voxels moved, "
                     f"{np.mean([r['polish']['seconds'] for r in rows]):.1f} s, reverted in {sum(bool(r['polish'].get('reverted')) for r in rows)}/{len(rows)}"
                     if all(r.get("polish") for r in rows) else "") + ".", "",
                  "| phase | slice perimeter vs image, guided | unguided | 3D SA guided | unguided | axes spanned guided | unguided |",
                  "|---|---|---|---|---|---|---|"]
            for p in range(n_p):
                g = lambda kind, key: [r["shape"][kind][key][p] for r in rows]  # noqa: E731
                L.append(f"| {p} | {ms([100 * v for v in g('guided', 'perimeter_rel')])} % | {ms([100 * v for v in g('unguided', 'perimeter_rel')])} % | "
                         f"{np.mean(g('guided', 'sa')):.4f} | {np.mean(g('unguided', 'sa')):.4f} | {np.mean(g('guided', 'spans')):.2f} | {np.mean(g('unguided', 'spans')):.2f} |")
            L.append("")
    if "deff" in res:
        L += ["| target (x) | n | unguided D_eff | target | achieved (TauFactor) | within 10 % | right direction | realism g / u | time |",
              "|---|---|---|---|---|---|---|---|---|"]
        for k, v in res["deff"].items():
            rows = v["rows"]
            if not rows:
                continue
            f = lambda key: ", ".join(f"{r[key]:.4f}" for r in rows)  # noqa: E731
            L.append(f"| {k} | {v['n']} | {f('unguided_taufactor')} | {f('target')} | {f('achieved_taufactor')} | "
                     f"{v['within_10pct']}/{v['n']} | {v['right_direction']}/{v['n']} | {real(rows)} | {timing(rows)} |")
        L.append("")
    if "tau" in res:
        t = res["tau"]
        L += [f"Target: τ along {args.tau.split('@')[1]} of phase {args.tau.split('@')[0]} = {t['target']:.3f}, the whole rock's "
              f"(`{Path(args.tau_rock).name}`, grid solver). **{t['passed']}/{t['n']} within 10 %.** τ per axis and the surface "
              "area of the phase, unguided (`reconstruct`" + (f", `init={args.init!r}`" if args.init else "") + ", same seed) → guided"
              + (" (from the same grain start)" if args.init else "") + ", measured on the final labels; realism = VAE "
              "round-trip accuracy of every 4th slice per axis, guided / unguided. Targets: "
              + ", ".join(f"`{k}={v}`" for k, v in t.get("targets", {}).items())
              + f"; the phase's fraction in the rock: {t.get('rock_fraction', float('nan')):.4f}.", "",
              "| seed | τ z | τ y | τ x | surface area | fraction | realism | time |", "|---|---|---|---|---|---|---|---|"]
        for r in t["rows"]:
            ta = r["tau_all_axes"]
            cells = [f"{ta['unguided'][a]:.2f} → **{ta['guided'][a]:.2f}**" if a == args.tau.split("@")[1] else
                     f"{ta['unguided'][a]:.2f} → {ta['guided'][a]:.2f}" for a in AX]
            fr = r.get("fraction", {})
            frac = f"{fr['unguided']:.4f} → {fr['guided']:.4f}" if fr else "–"
            L.append(f"| {r['seed']} | {' | '.join(cells)} | {r['sa']['unguided']:.4f} → {r['sa']['guided']:.4f} | {frac} | "
                     f"{r['realism']:.4f} / {r['realism_unguided']:.4f} | {r['wall_s']:.0f} s ({r['per_step_s']:.1f} s/step) |")
        L.append("")
    return "\n".join(L)


def main() -> None:
    ap = model_image_parser(__doc__)
    ap.add_argument("--sets", default="vf,s2,sa,deff")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--phases", type=int, nargs="+", default=None)
    ap.add_argument("--deff-factors", type=float, nargs="+", default=[1.5, 0.5])
    ap.add_argument("--deff-target", action="append", default=None, help="PHASE=VALUE (instead of factors)")
    ap.add_argument("--deff-seeds", type=int, default=0, help="volumes per D_eff case (default: --seeds)")
    ap.add_argument("--property-every", type=int, default=5)
    ap.add_argument("--calibrate-every", type=int, default=None, help="passed to generate (default: its own)")
    ap.add_argument("--polish", type=int, default=None, help="s2 set: label-polish iterations passed to generate (default: its own)")
    ap.add_argument("--match-vf-image", action="store_true", help="s2 set: match_vf = IMAGE's phase fractions")
    ap.add_argument("--checkpoint-every", type=int, default=None, help="passed to generate (default: its own)")
    ap.add_argument("--s2-target", choices=("train", "image"), default="train",
                    help="s2 set: the model's stored patch S2 or IMAGE's own S2 (the metric's reference)")
    ap.add_argument("--tau", default="0@z")
    ap.add_argument("--tau-rock", default=None)
    ap.add_argument("--tau-with-vf", action="store_true", help="tau set: also target the rock's fraction of the phase")
    ap.add_argument("--weight", action="append", default=None, help="NAME=W passed to generate")
    ap.add_argument("--init", choices=("grains",), default=None,
                    help="start every run (and its unguided reference) from reconstruct's grain start (default: noise)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the committed sets; 0: torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from microlad.bundled import resolve_model
    from microlad.io import read_image
    from microlad.model import load_model

    model = load_model(resolve_model(args.model_dir))
    if args.phases is None:
        args.phases = list(range(model.n_phases))
    ref = read_image(args.image).labels
    if ref.ndim == 3:  # a 3D rock (the tau set): its central z slice stands in for a training image
        ref = ref[ref.shape[0] // 2]
    b = Bench(model, ref, args)
    stats = crop_stats(ref, model.n_phases)
    res: dict = {"crop_stats": stats}
    start = machine()
    t0 = time.perf_counter()
    for name in args.sets.split(","):
        if name == "vf":
            res["vf"] = set_vf(b, stats)
        elif name == "sa":
            res["sa"] = set_sa(b, stats)
        elif name == "s2":
            res["s2"] = set_s2(b)
        elif name == "deff":
            res["deff"] = set_deff(b)
        elif name == "tau":
            res["tau"] = set_tau(b)
        else:
            raise SystemExit(f"unknown set {name!r}")
    info = machine() | {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "total_s": round(time.perf_counter() - t0, 1),
                        "command": command_line(), "start": start}
    save(f"guidance_{args.name}", {"machine": info, "args": vars(args), "results": res}, markdown(args.name, args, res, info))


if __name__ == "__main__":
    main()
