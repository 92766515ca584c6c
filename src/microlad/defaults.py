"""Reconstruction defaults shared by the Python API, the CLI, the demo and the benchmarks.

Kept free of heavy imports so the CLI can read them without loading torch. The
measurements behind each choice are in BENCHMARKS.md.
"""

RECONSTRUCT_STEPS = 25
"""DDIM steps of L-MPDD. Chosen because 25 steps give the same slice-S2 fidelity as 50
within the standard error at half the sampling time (BENCHMARKS.md)."""

RECONSTRUCT_COUPLING_STOP = 0.0
"""Slice coupling of L-MPDD runs at the steps with timestep t >= this fraction of the
training timesteps (0: every step). See BENCHMARKS.md, "Fine scale"."""

PRIOR_SAMPLER = "ddim"
PRIOR_SAMPLER_STEPS = 50
"""Sampler and steps of the 2D prior (:meth:`~microlad.model.MicroladModel.sample_2d`) for
models that store no calibrated choice (``config.prior_sampler``,
:func:`microlad.reconstruct.calibration.calibrate_prior_sampler`; models trained before
2026-12-07 midday)."""

RECONSTRUCT_MATCH_LATENT_MEAN = True
"""Shift every L-MPDD step's clean estimate per latent channel to the mean of the 2D
prior's own clean estimates at that step (``match_latent_mean``,
:mod:`microlad.reconstruct.moments`). Chosen because L-MPDD's latent drifts against
minority phases and its pores connect worse for it: on Berea (8 × 128³) every axis of
every volume spans and the spanning fraction and tortuosity move toward the rock's, on
Leopard the slices lose their excess boundary, and the SOFC, carbonate, composite and NMC
volumes' fine-scale statistics do not change beyond their standard error (BENCHMARKS.md,
fine-scale findings)."""

RECONSTRUCT_REFINE = 1
"""Three-axis refinement passes K (``refine``). Chosen because a second pass changes far
fewer voxels than the first and the slice-S2 fidelity does not improve (BENCHMARKS.md)."""

GUIDANCE_STEPS = 60
"""SDS guidance steps per volume (``microlad generate``); what 60 steps reach at 64³ is in
BENCHMARKS.md."""

GUIDANCE_POLISH = 100
"""Largest number of label-polish iterations after an S2-guided run (``--polish``;
:mod:`microlad.reconstruct.polish`). Chosen because at 64³ 100 iterations take the per-volume
S2 error from 1–4 % to 0.1–0.5 % in about 10 s, and 200 gain a further 0.1–0.3 points for
twice the time (BENCHMARKS.md, guidance status)."""

RECONSTRUCT_SMOOTH = True
"""Perimeter-calibrated smoothing before labelling (``smooth``): a Gaussian blur of the
voxel probabilities whose width is set per volume so the slices have the training images'
boundary length per area (:mod:`microlad.reconstruct.smoothing`). Chosen because without it
the slices of the bundled SOFC model and of a Berea model are rougher than their training
images, the 3D surface area exceeds the stereological value and the volumes hold many
isolated specks; it leaves volumes that are not rougher than the images unchanged
(BENCHMARKS.md, "Fidelity levers" and the fine-scale findings)."""

GRAINS_START = 0.6
"""``reconstruct(init="grains")``: the grain pack is noised to this fraction of the training
timesteps and L-MPDD runs from there (BENCHMARKS.md, fine-scale findings)."""
