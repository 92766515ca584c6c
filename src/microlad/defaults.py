"""Reconstruction defaults shared by the Python API, the CLI, the demo and the benchmarks.

Kept free of heavy imports so the CLI can read them without loading torch.
"""

RECONSTRUCT_STEPS = 25
"""DDIM steps of L-MPDD. 25 and 50 steps give the same slice-S2 fidelity within the
standard error (30 × 64³, SOFC anode and carbonate: max |signed error| 2.2 / 1.1 % at 25
steps, 2.2 / 1.3 % at 50); 25 halves the sampling time (BENCHMARKS.md)."""

REFINE_PASSES = 1
"""Three-axis refinement passes K (pass 1 changes ~0.7 % of the voxels, pass 2 ~0.14 %)."""

GUIDANCE_STEPS = 60
"""SDS guidance steps per volume (``microlad generate``); see BENCHMARKS.md for what 60
steps reach at 64³."""
