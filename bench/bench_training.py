"""Summarise a `microlad train` run for BENCHMARKS.md: time, losses, VAE accuracy and the
S2 error of 2D samples from the prior against the training image.

Usage (train first, e.g. with default settings)::

    microlad train ../shared/data/2d/sofc_anode_1024.tif --out runs/sofc
    python bench/bench_training.py runs/sofc ../shared/data/2d/sofc_anode_1024.tif --name sofc

S2 error: |A_gen − A_ref| / A_ref, A = Σ_{r ≤ patch/2} S2(r), non-periodic, of 64 decoded
DDIM samples (50 steps) at the training patch size against the whole training image.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_PAPER, machine, model_image_parser, provenance, save  # noqa: E402


def main() -> None:
    ap = model_image_parser(__doc__)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--note", default="", help="free text, e.g. the machine load during training")
    args = ap.parse_args()

    from microlad.descriptors import s2_error, s2_radial, volume_fraction
    from microlad.io import read_image
    from microlad.model import load_model

    start = machine()
    model = load_model(args.model_dir)
    rep = model.training_stats.report
    ref = read_image(args.image).labels
    size = model.patch_size
    c = size // 2
    samples = model.sample_2d(args.samples, size=size, steps=50, seed=123)
    p_count = model.n_phases
    err = [float(s2_error(np.mean([s2_radial(s, phase=p, cutoff=c, periodic=False) for s in samples], axis=0),
                          s2_radial(ref, phase=p, cutoff=c, periodic=False))) for p in range(p_count)]
    vf_s = np.mean([volume_fraction(s, n_phases=p_count) for s in samples], axis=0)
    vf_r = volume_fraction(ref, n_phases=p_count)
    t = rep.time_s
    losses = rep.final_losses
    acc = rep.vae_reconstruction
    info = machine()
    rows = [
        f"## Training: {args.name} (`microlad train`, summarised by `bench/bench_training.py`)",
        "",
        provenance(start=start, end=info, paper=f"{NO_PAPER} (the paper states no training time or 2D-prior S2 error)")
        + " (Machine, load and date: this summary's run; the training run's load and threads: the note below.)",
        "",
        f"Input `{Path(args.image).name}`; patch {size}, batch {rep.batch}, VAE {rep.steps['vae']} steps, "
        f"latent DDPM {rep.steps['ldm']} steps, seed {rep.seed}, device {rep.device}. {args.note}",
        "",
        "| wall time (VAE / stats / LDM / total) | final VAE CE / KL | final LDM loss | VAE held-out pixel accuracy | per-phase accuracy |",
        "|---|---|---|---|---|",
        f"| {t['vae']:.0f} / {t['stats']:.0f} / {t['ldm']:.0f} / **{t['total'] / 60:.1f} min** | {losses['vae']['ce']:.4f} / {losses['vae']['kl']:.3f} | "
        f"{losses['ldm']['loss']:.4f} | {acc.pixel_accuracy:.4f} | {', '.join(f'{a:.4f}' for a in acc.accuracy)} |",
        "",
        f"VAE reconstructions of held-out patches: VF error {', '.join(f'{v:.4f}' for v in acc.vf_error)}, "
        f"S2 error {', '.join(f'{v * 100:.2f} %' for v in acc.s2_error)} (per phase).",
        "",
        f"2D prior ({args.samples} DDIM-50 samples of {size}²) vs the training image: VF {', '.join(f'{v:.3f}' for v in vf_s)} "
        f"(image {', '.join(f'{v:.3f}' for v in vf_r)}); S2 error per phase {', '.join(f'{e * 100:.1f} %' for e in err)}.",
    ]
    save(f"training_{args.name}", {"machine": info, "machine_start": start, "report": rep.to_dict(), "prior_s2_error": err, "prior_vf": vf_s.tolist(),
                                   "image_vf": vf_r.tolist()}, "\n".join(rows))


if __name__ == "__main__":
    main()
