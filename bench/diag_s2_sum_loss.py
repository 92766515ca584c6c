"""One-off (bench/results/guidance.md, fifth status): the S2 loss plus a term on the summed S2 (the paper metric itself), per-volume achieved error against a committed set of the same seeds. Usage: python bench/diag_s2_sum_loss.py MODEL IMAGE SET_NAME N"""
import json, sys
from pathlib import Path

import numpy as np
import torch
torch.set_num_threads(1)
from microlad.guidance import terms as T
from microlad.model import load_model
from microlad.bundled import resolve_model
orig = T.loss_of
def loss_of(term, value, axis=None, plane=None):
    l = orig(term, value, axis, plane)
    if term.target.kind == "s2":
        tgt = T._s2_target(term, value, axis, plane)
        l = l + (((value.sum(-1) - tgt.sum(-1)) / tgt.sum(-1).clamp_min(1e-6)) ** 2).mean()
    return l
T.loss_of = loss_of
import microlad.guidance.loop as L
L.T.loss_of = loss_of
model, img, name = sys.argv[1], sys.argv[2], sys.argv[3]
m = load_model(resolve_model(model))
base = json.load(open(Path(__file__).parent / 'results' / f'guidance_{name}.json'))['results']['s2']['rows']
out = []
for i, seed in enumerate(range(2000, 2000 + int(sys.argv[4]))):
    r = m.generate((64,) * 3, {"s2": img}, seed=seed, progress=False)[0]
    out.append((r.terms[0].achieved, base[i]['terms'][0]['achieved']))
    print(seed, round(100 * out[-1][0], 2), 'base', round(100 * out[-1][1], 2), flush=True)
d = np.array([a - b for a, b in out]) * 100
print('paired %.2f ± %.2f (%d/%d better)' % (d.mean(), d.std(ddof=1) / np.sqrt(len(d)), (d < 0).sum(), len(d)))
