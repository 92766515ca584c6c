"""Compare checkpoint-choice rules of guidance offline, on records of
``bench/diag_checkpoint_guard.py`` (issue #10: the spanning guard, guidance.md status of the
tenth session).

Each record holds, per run, the start (calibration 0) and every measured checkpoint: S2 error,
the guarded (phase, axis) spannings and each phase's spanning fraction. Rules, all choosing
among the checkpoints (not the start), ties to the later one:

* ``s2_only``: the smallest S2 error;
* ``current``: the library's rule until 2026-12-07 ("all seen"), fewest lost spannings seen at
  the start or any checkpoint, then the smallest S2 error (reproduces ``selected`` of records
  made before that change);
* ``seen<=final``: spannings seen at the start or at checkpoints no further from the target
  than the last step count; ``seen<=median``: ... than the median checkpoint;
  ``start+final``: only the start's and the last step's spannings count (the library's rule
  since the eleventh session).

Prints per run the chosen checkpoint (index, S2 %) per rule, then per rule the per-volume S2
error (mean ± SE, max), the pairs lost against everything seen in the run, and the mean
spanning fraction of the last phase (the pore phase of the binary rock models).

Usage: python bench/diag_guard_rules.py RECORDS.json [RECORDS.json ...]
"""
import json
import sys

import numpy as np


def lost(seen, spans): return len(seen - spans)
for path in sys.argv[1:]:
    d = json.load(open(path)); runs = d["runs"]
    print(path, len(runs), "runs")
    rules = {}
    for run in runs:
        cal = run["cal"]; start = cal[0]; cps = cal[1:]
        S = [frozenset(map(tuple, c["spans"])) for c in cal]
        s2 = [c["s2"] for c in cal]
        allseen = S[0].union(*S[1:])
        final = len(cal) - 1
        def pick(key): return min(range(1, len(cal)), key=key)
        choices = {"s2_only": pick(lambda i: (s2[i], -i)), "current": pick(lambda i: (lost(allseen, S[i]), s2[i], -i))}
        seen_f = S[0].union(*[S[i] for i in range(1, len(cal)) if s2[i] <= s2[final]])
        choices["seen<=final"] = pick(lambda i: (lost(seen_f, S[i]), s2[i], -i))
        med = float(np.median(s2[1:]))
        seen_m = S[0].union(*[S[i] for i in range(1, len(cal)) if s2[i] <= med])
        choices["seen<=median"] = pick(lambda i: (lost(seen_m, S[i]), s2[i], -i))
        seen_sf = S[0] | S[final]
        choices["start+final"] = pick(lambda i: (lost(seen_sf, S[i]), s2[i], -i))
        for name, i in choices.items():
            r = rules.setdefault(name, {"s2": [], "lost_all": [], "pore_span": []})
            r["s2"].append(s2[i]); r["lost_all"].append(lost(allseen, S[i]))
            r["pore_span"].append(float(np.mean(cal[i]["span"][-1])))
        print("  seed", run["seed"], {k: (v, round(100 * s2[v], 2)) for k, v in choices.items()}, "selected by the library:", run.get("selected"))
    for name, r in rules.items():
        a = np.array(r["s2"]) * 100
        print(f"  {name:14s} S2 per vol {a.mean():.2f} ± {a.std(ddof=1)/np.sqrt(len(a)):.2f} %, max {a.max():.2f}; pairs lost vs seen-in-run {sum(r['lost_all'])}; pore spanning {np.mean(r['pore_span']):.3f}")
