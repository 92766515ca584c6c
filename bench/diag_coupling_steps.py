"""Diagnosis (issue #11): fine-scale error of default reconstructions vs L-MPDD steps and slice coupling.

Usage: python bench/diag_coupling_steps.py MODEL IMAGE STEPS [plain]

Four 64³ volumes (seeds 1000..1003) made by ``reconstruct`` with the given DDIM steps (and
without slice coupling when ``plain`` is given), measured as in ``bench_fine_scale.py``
(slice perimeter, clusters per area, largest small-r S2 error, signed %, mean over
volumes). Prints one line; writes nothing (findings are quoted in
bench/results/fine_scale_findings.md).
"""
import sys

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_fine_scale import errors, measure_volume, reference  # noqa: E402

from microlad.bundled import resolve_model  # noqa: E402
from microlad.io import read_image  # noqa: E402
from microlad.model import load_model  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    model = load_model(resolve_model(sys.argv[1]))
    p = model.n_phases
    ref = reference(read_image(sys.argv[2]).labels, p)
    steps, coupled = int(sys.argv[3]), len(sys.argv) < 5
    errs = []
    for seed in range(1000, 1004):
        lab = model.reconstruct((64,) * 3, seed=seed, steps=steps, slice_coupling=coupled, progress=False)[0].labels
        errs.append(errors(measure_volume(lab, p), ref))
    print("steps", steps, "coupled" if coupled else "plain",
          {k: np.round(np.mean([e[k] for e in errs], 0) * 100, 1).tolist() for k in errs[0]}, flush=True)


if __name__ == "__main__":
    main()
