"""Which command writes which results snippet (``bench/results/NAME.md``), and what it costs.

``python bench/run_all.py --list`` prints this registry and ``--rerun NAME`` runs an entry's
command, then rebuilds BENCHMARKS.md. Commands are written as typed from the repository root;
``$DATA`` stands for the shared data folder (``$MICROLAD_SHARED_DATA``, default
``../shared/data``) and is expanded before running. Each command was recovered from the
snippet's own text, its JSON (``args``, ``command``), the script's defaults and the commit that
added it; where a detail was not recorded, the entry's ``note`` says what was assumed.

``minutes``: rough wall time on the 2-core project machine (from the recorded run where there
is one); ``--skip-slow`` leaves out entries above :data:`SLOW_MINUTES`. ``setup``: commands run
first (inputs the command reads). ``needs``: paths outside the repository the command reads
(model directories of earlier sessions, shared data the script reads by default; the ``$DATA``
files a command names count too); when one is missing the entry is skipped with a one-line message. ``stale``: set when no command reproduces the snippet anymore (the code it
measured is gone); the command is kept as a record of how it was made, and ``--rerun`` skips it.
"""
from __future__ import annotations

from dataclasses import dataclass

SLOW_MINUTES = 15.0

SOFC = "$DATA/2d/sofc_anode_1024.tif"
CARBONATE = "$DATA/2d/carbonate_256.npy"
NMC = "$DATA/2d/nmc_cathode_1024.tif"
COMPOSITE = "$DATA/2d/composite_256.npy"
BEREA = "$DATA/3d/berea_400.npz"  # read by default by the scripts that take no data argument
SOFC_MODEL = "src/microlad/assets/models/sofc-anode"
CARBONATE_MODEL = "src/microlad/assets/models/carbonate"
CELL_PLANES = ("measured with the slice terms reading only the latent planes (cell centres); since 2026-12-06 (night) each step "
               "reads the voxel planes at a random in-cell offset (`plane_offsets`), and the *_offsets entries measure the same "
               "seeds with it")
ONE_S2_OFFSET = ("measured with one S2 calibration offset shared by the three slicing axes; since 2026-12-06 each axis has its "
                 "own (the *_s2_image_axis entries measure the same seeds with it)")
CAL5_DEFAULT = ("measured while an S2 target calibrated every 5 steps by default (2026-12-06, late; reverted the same "
                "night after Leopard lost pore spanning with it); the same command now measures 3 calibrations per run")
FEW_CHECKPOINTS = ("measured before S2 and surface-area runs also measured a checkpoint every steps/12 between calibrations "
                   "and the choice kept the run's spannings (2026-12-07); the same command now measures that default")
UNGUARDED_POLISH = ("measured before reconstruct's polish stopped splitting phases (2026-12-08: no flip may cut a 6-connected "
                    "piece); the same command now runs the guarded polish, whose results are fine_scale_*_polish_guard")
NO_POLISH = ("measured before S2-guided runs ended with the label polish (2026-12-07, night); the same command now "
             "polishes; the *_s2_image_nopolish entries are the same runs with --polish 0, *_s2_image_polish with it")
OLD_CARBONATE = "/work/runs/carbonate"
FIRST_CARBONATE = ("measured the first bundled carbonate model (2026-12-03, --ldm-steps 4000, centre-weighted patch sampler), "
                   "replaced on 2026-12-06 by one trained with default settings; a re-run measures the new weights")
OLD_CARBONATE_NOTE = ("/work/runs/carbonate is a carbonate model of an earlier session, not in the repository (the bundled "
                      "`carbonate`, trained 2026-12-03 with --ldm-steps 4000, is a different model: the same command with "
                      f"{CARBONATE_MODEL} would measure it, not reproduce this table)")
PIXEL_DIR = "/work/runs/pixel_baseline"
PIXEL_NOTE = (f"{PIXEL_DIR} is the pixel-space baseline, not in the repository; make it first with "
              f"`python bench/pixel_baseline.py {SOFC} {PIXEL_DIR}` (a 1213 CPU-s training budget: 42 min wall at load ~3.5)")
LAT8 = ("model: `microlad train IMAGE --out /work/runs/NAME-lat8 --config lat8.json --threads 1` with lat8.json = "
        "`{\"vae_config\": {\"latent_channels\": 8}}`, default settings otherwise (2026-12-07, four trainings sharing the "
        "2 cores, 38–44 min each); not in the repository")
RANDOM_REF = ("measured against random 64² patches of the image (before 2026-12-06), with the model's training "
              "statistics from random patches; the script now uses the image's tiles and the bundled models store "
              "tile statistics, so a re-run measures against the image's own statistics (on carbonate 9 % lower "
              "perimeter), it does not reproduce this table")
RULE_CAP1 = ("measured the first balance rule (gain capped at 1), replaced by rule G (microlad.guidance.balance); "
             "the same command now measures rule G")
RULE_GAIN4 = ("measured the intermediate linear gain-4 balance rule, replaced by rule G (microlad.guidance.balance); "
              "the same command now measures rule G")


@dataclass(frozen=True)
class Entry:
    """One results snippet and the command that writes it."""

    name: str
    command: str
    minutes: float
    setup: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    stale: str = ""
    note: str = ""

    @property
    def slow(self) -> bool:
        return self.minutes > SLOW_MINUTES

    @property
    def inputs(self) -> tuple[str, ...]:
        """Paths outside the repository the entry reads: ``needs`` and the ``$DATA`` files its commands name."""
        data = [t for cmd in (*self.setup, self.command) for t in cmd.split() if t.startswith("$DATA/")]
        return tuple(dict.fromkeys([*self.needs, *data]))

    @property
    def script(self) -> str:
        """The bench script the command runs (``bench/NAME.py``)."""
        return self.command.split()[1]


def _guidance(name: str, args: str, minutes: float, *, model: str = "sofc-anode", image: str = SOFC, stale: str = "",
              needs: tuple[str, ...] = (), note: str = "") -> Entry:
    cmd = f"python bench/bench_guidance.py {model} {image} --name {name.removeprefix('guidance_')} {args}"
    return Entry(name, cmd, minutes, needs=needs, stale=stale, note=note)


DEFAULT_THREE_PHASE = tuple((name, f"/work/runs/{name}-default", image, (f"/work/runs/{name}-default",))
                            for name, image in (("composite", COMPOSITE), ("nmc", NMC)))
"""(name, model, image, needs) of the composite and NMC models trained with default settings (not in the repository)."""


CAL_NOTE = ("/work/runs/cal/NAME is a copy of /work/runs/NAME (see the entries above) whose coupling window was then "
            "calibrated with `python scripts/calibrate_model.py /work/runs/cal/NAME` (2026-12-06: composite 0.75, NMC 1), "
            "not in the repository")


ENTRIES: tuple[Entry, ...] = (
    Entry("transport", "python bench/bench_transport.py", 7, needs=(BEREA,),
          note="Berea 128³ and 200³, three axes, TauFactor on 1 thread (the defaults); TauFactor takes most of the time"),
    Entry("grid_solver", "python bench/bench_grid_solver.py", 2, needs=(BEREA,), note="Berea 200³, both phases; peak RSS ~2.6 GiB (AMG)"),
    Entry("threads", "python bench/bench_threads.py", 6,
          note="8 fresh `microlad reconstruct` runs of 64³; uses every core and starts one busy process on purpose"),
    Entry("properties_large", "python bench/bench_properties_large.py", 8, needs=(BEREA,),
          note="Berea 400³ and 512³ through `microlad properties`; peak RSS ~3.5 GiB; reuses the AMG reference stored in "
               "properties_large.json (add --reference to re-measure it: +5 min, ~6 GiB)"),
    Entry("training_sofc_default",
          f"python bench/bench_training.py {SOFC_MODEL} {SOFC} --name sofc_default --note 'Default settings, 1 torch thread "
          "(the CLI default on this 2-core machine), trained while other jobs shared the CPU (load average about 2).'", 2,
          note="summarises the training report stored in the bundled sofc-anode model (the original run's model directory "
               "was not recorded; its report has the same timings and losses); the training itself is not rerun: "
               f"`microlad train {SOFC} --out DIR` (20 min)"),
    Entry("training_carbonate",
          f"python bench/bench_training.py {CARBONATE_MODEL} {CARBONATE} --name carbonate --note 'Bundled model `carbonate` "
          "(src/microlad/assets/models/carbonate), default settings (uniform mirrored patch sampler, tile statistics); 1 torch "
          "thread; trained while four other jobs shared the 2 cores (load average about 5), hence the long wall time.'", 2,
          note="summarises the training report stored in the bundled carbonate model; the training itself is not rerun: "
               f"`microlad train {CARBONATE} --out DIR --threads 1` (51 min at load 5)"),
    Entry("reconstruct", f"python bench/bench_reconstruct.py {SOFC_MODEL}", 6,
          note="64³ cycled and averaged, 256³ at K = 1 and 2, each in its own process on every core"),
    Entry("fidelity_sofc", f"python bench/bench_fidelity.py {SOFC_MODEL} {SOFC} --name sofc", 4),
    Entry("fidelity_carbonate", f"python bench/bench_fidelity.py {CARBONATE_MODEL} {CARBONATE} --name carbonate", 7),
    Entry("fidelity_carbonate_n30",
          f"python bench/bench_fidelity.py {OLD_CARBONATE} {CARBONATE} --name carbonate_n30 -n 30 --seed 3000", 14,
          needs=(OLD_CARBONATE,), note=OLD_CARBONATE_NOTE),
    Entry("fidelity_carbonate_seed2000",
          f"python bench/bench_fidelity.py {OLD_CARBONATE} {CARBONATE} --name carbonate_seed2000 --seed 2000", 5,
          needs=(OLD_CARBONATE,), note=OLD_CARBONATE_NOTE),
    Entry("fidelity_carbonate_seed4000",
          f"python bench/bench_fidelity.py {OLD_CARBONATE} {CARBONATE} --name carbonate_seed4000 --seed 4000", 5,
          needs=(OLD_CARBONATE,), note=OLD_CARBONATE_NOTE),
    Entry("fine_scale_sofc", f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 6 --name sofc", 25,
          note="7 variants × 6 volumes of 64³ on 1 torch thread (the recorded run: 24.7 min); recorded before the "
               "perimeter-calibrated smoothing: its `default` row is today's `unsmoothed` variant; " + RANDOM_REF),
    Entry("fine_scale_sofc_smoothing",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 10 --variants default,unsmoothed --name sofc_smoothing", 4,
          note="the default (smoothed) finish vs the same volumes unsmoothed, 10 × 64³; " + RANDOM_REF),
    Entry("fine_scale_carbonate_smoothing",
          f"python bench/bench_fine_scale.py carbonate {CARBONATE} -n 10 --variants default,unsmoothed --name carbonate_smoothing", 3,
          stale=FIRST_CARBONATE, note=RANDOM_REF),
    Entry("fine_scale_carbonate_prior",
          f"python bench/bench_fine_scale.py carbonate {CARBONATE} -n 2 --variants prior_2d --name carbonate_prior", 1, stale=FIRST_CARBONATE,
          note="the carbonate 2D prior alone: 2 × 64 decoded 64² samples against 64² patches of the image; " + RANDOM_REF),
    Entry("fine_scale_nmc_prior",
          f"python bench/bench_fine_scale.py /work/runs/nmc-default {NMC} -n 4 --variants prior_2d --name nmc_prior", 1,
          needs=("/work/runs/nmc-default",),
          note=f"the NMC 2D prior: 4 × 64 decoded samples vs the image's tiles; /work/runs/nmc-default is `microlad train {NMC} "
               "--out /work/runs/nmc-default --threads 1` (default settings, 2026-12-06, 30 min), not in the repository"),
    Entry("fine_scale_carbonate_tiles",
          f"python bench/bench_fine_scale.py carbonate {CARBONATE} -n 10 --variants prior_2d,default --name carbonate_tiles", 3,
          note="the bundled carbonate model's prior and default 3D volumes against the image's own tiles"),
    Entry("fine_scale_sofc_tiles",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 10 --variants prior_2d,default --name sofc_tiles", 8,
          note="the bundled SOFC model's prior and default 3D volumes against the image's own tiles"),
    Entry("fine_scale_sofc_prior_steps",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 6 --variants prior_2d,prior_2d_ddim50,prior_2d_ddim100 --name sofc_prior_steps", 8,
          note="the bundled SOFC prior's roughness against its DDIM step count (25 = the default)"),
    Entry("fine_scale_sofc_ldm5000",
          f"python bench/bench_fine_scale.py /work/runs/sofc-ldm5000 {SOFC} -n 6 --variants prior_2d,prior_2d_ddim50,default "
          "--name sofc_ldm5000", 6, needs=("/work/runs/sofc-ldm5000",),
          note="model: `microlad train SOFC --out /work/runs/sofc-ldm5000 --ldm-steps 5000 --threads 2` (twice the default "
               "LDM steps; compare fine_scale_sofc_prior_steps and fine_scale_sofc_ldm2500_default, same seeds)"),
    Entry("fine_scale_sofc_ldm2500_default",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 6 --variants default --name sofc_ldm2500_default", 2,
          note="the bundled SOFC model's 3D default on fine_scale_sofc_ldm5000's seeds"),
    Entry("fine_scale_sofc_dpm",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 6 --variants prior_2d,prior_2d_dpm,default,dpm --name sofc_dpm", 4,
          note="DPM-Solver++(2M) against DDIM (25 steps each) for the bundled SOFC prior and as the L-MPDD sampler"),
    Entry("fine_scale_sofc_dpm50",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 6 --variants prior_2d_ddim50,prior_2d_dpm50 --name sofc_dpm50", 3,
          note="the bundled SOFC prior at 50 steps of DDIM and of DPM-Solver++(2M)"),
    *(Entry(f"fine_scale_{name}_prior_model",
            f"python bench/bench_fine_scale.py {model} {image} -n 6 --variants prior_2d,prior_2d_ddim50,prior_2d_dpm,"
            f"prior_2d_dpm50,prior_2d_model --name {name}_prior_model", 6, needs=needs,
            note="the 2D prior with each candidate sampler and with the one calibrated for the model "
                 "(`config.prior_sampler`; `scripts/calibrate_model.py MODEL --what prior` for models trained before it)")
      for name, model, image, needs in (("sofc", "sofc-anode", SOFC, ()), ("carbonate", "carbonate", CARBONATE, ()),
                                        *DEFAULT_THREE_PHASE)),
    Entry("fine_scale_carbonate_dpm",
          f"python bench/bench_fine_scale.py carbonate {CARBONATE} -n 6 --variants prior_2d,prior_2d_ddim50,prior_2d_dpm,prior_2d_dpm50 "
          "--name carbonate_dpm", 3,
          note="the bundled carbonate prior at 25 and 50 steps of DDIM and of DPM-Solver++(2M)"),
    *(Entry(f"fine_scale_{name}_lat8",
            f"python bench/bench_fine_scale.py /work/runs/{name}-lat8 {image} -n 6 --variants prior_2d,prior_2d_ddim50,"
            f"prior_2d_dpm,prior_2d_dpm50,default --name {name}_lat8", 6, needs=(f"/work/runs/{name}-lat8",), note=LAT8)
      for name, image in (("sofc", SOFC), ("carbonate", CARBONATE), ("composite", COMPOSITE), ("nmc", NMC))),
    *(Entry(f"fine_scale_sofc_{name}",
            f"python bench/bench_fine_scale.py /work/runs/sofc-{name} {SOFC} -n 6 --variants prior_2d,default --name sofc_{name}", 3,
            needs=(f"/work/runs/sofc-{name}",),
            note=f"model: `microlad train SOFC --out /work/runs/sofc-{name} --config CFG --threads 1` with CFG = `{cfg}` "
                 "(2026-12-07, two trainings sharing the 2 cores); not in the repository")
      for name, cfg in (("beta01", '{"options": {"beta": 0.01}}'),
                        ("lat8beta01", '{"vae_config": {"latent_channels": 8}, "options": {"beta": 0.01}}'))),
    *(Entry(f"fine_scale_{name}_{kind}",
            f"python bench/bench_fine_scale.py {model} {image} -n 6 --variants default,{variants} --name {name}_{kind}", 4,
            note=f"the bundled {model} model: {what}")
      for name, model, image in (("sofc", "sofc-anode", SOFC), ("carbonate", "carbonate", CARBONATE))
      for kind, variants, what in (
          ("harmonise", "harmonise_100,harmonise_300",
           "a harmonising pass after L-MPDD (re-noise to t, one clean estimate along x, y, z), default finish"),
          ("stop", "stop_439,stop_199", "L-MPDD stopped at a mid-noise step (its clean estimate decoded), default finish"))),
    Entry("fine_scale_carbonate_prior_steps",
          f"python bench/bench_fine_scale.py carbonate {CARBONATE} -n 6 --variants prior_2d,prior_2d_ddim50,prior_2d_ddim100 --name carbonate_prior_steps", 8,
          note="the bundled carbonate prior against its DDIM step count (does the SOFC trend carry over?)"),
    Entry("fine_scale_sofc_perphase",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 10 --variants default --name sofc_perphase", 4,
          note="the default reconstruction with per-phase smoothing widths (2026-12-06) against the image's tiles"),
    Entry("fine_scale_composite_perphase",
          f"python bench/bench_fine_scale.py /work/runs/composite-mirror {COMPOSITE} -n 6 --variants default,common_width "
          "--name composite_perphase", 2, needs=("/work/runs/composite-mirror",),
          note="per-phase vs one common smoothing width on the composite model (stores no coupling window: every step coupled)"),
    Entry("fine_scale_nmc_perphase",
          f"python bench/bench_fine_scale.py /work/runs/nmc-default {NMC} -n 6 --variants default,common_width "
          "--name nmc_perphase", 2, needs=("/work/runs/nmc-default",),
          note="per-phase vs one common smoothing width on the NMC model (stores no coupling window: every step coupled)"),
    Entry("fine_scale_composite_window",
          f"python bench/bench_fine_scale.py /work/runs/composite-mirror {COMPOSITE} -n 4 "
          "--variants default,coupled_until_0.5,coupled_until_0.7,plain --name composite_window", 2,
          needs=("/work/runs/composite-mirror",),
          note="the slice coupling restricted to the high-noise steps (t >= F·T), composite; `plain` is unsmoothed"),
    Entry("fine_scale_composite_calibrated",
          f"python bench/bench_fine_scale.py /work/runs/cal/composite-mirror {COMPOSITE} -n 6 --variants default "
          "--name composite_calibrated", 2, needs=("/work/runs/cal/composite-mirror",), note=CAL_NOTE),
    Entry("fine_scale_nmc_calibrated",
          f"python bench/bench_fine_scale.py /work/runs/cal/nmc-default {NMC} -n 6 --variants default "
          "--name nmc_calibrated", 2, needs=("/work/runs/cal/nmc-default",), note=CAL_NOTE),
    *(entry
      for name, upper, image, base in (("nmc", "NMC", NMC, "/work/runs/cal/nmc-default"),
                                       ("composite", "COMPOSITE", COMPOSITE, "/work/runs/cal/composite-mirror"))
      for entry in (
          Entry(f"fine_scale_{name}_vae800",
                f"python bench/bench_fine_scale.py {base} {image} -n 6 --variants prior_2d,default --name {name}_vae800", 4,
                needs=(base,), note=f"the 800-step-VAE baseline of fine_scale_{name}_vae3200 (same seeds); " + CAL_NOTE),
          Entry(f"fine_scale_{name}_vae3200",
                f"python bench/bench_fine_scale.py /work/runs/{name}-vae3200-full {image} -n 6 --variants prior_2d,default "
                f"--name {name}_vae3200", 4, needs=(f"/work/runs/{name}-vae3200-full",),
                note=f"model: `microlad train {upper} --out /work/runs/{name}-vae3200-full --vae-steps 3200 --vae-rounds 1 "
                     "--threads 1` (default settings otherwise: 2500 LDM steps, coupling window calibrated)"))),
    *(entry
      for name, image in (("nmc", NMC), ("composite", COMPOSITE))
      for entry in (
          Entry(f"fine_scale_{name}_vae24_prior",
                f"python bench/bench_fine_scale.py /work/runs/{name}-vae24 {image} -n 6 --variants prior_2d_model "
                f"--name {name}_vae24_prior", 1, needs=(f"/work/runs/{name}-vae24",),
                note=f"the 2D prior of a model with a 1.5x wider VAE: `microlad train {image} --out /work/runs/{name}-vae24 "
                     "--threads 1 --config CFG`, CFG = {\"vae_config\": {\"base_channels\": 24, \"channel_multipliers\": [1, 2, 4]}}; "
                     f"baseline: fine_scale_{name}_prior_model"),
          Entry(f"fine_scale_{name}_vae24_3d",
                f"python bench/bench_fine_scale.py /work/runs/{name}-vae24 {image} -n 6 --variants default "
                f"--name {name}_vae24_3d", 2, needs=(f"/work/runs/{name}-vae24",),
                note=f"3D default reconstructions of the wider-VAE model (see fine_scale_{name}_vae24_prior)"),
          Entry(f"fine_scale_{name}_default_3d",
                f"python bench/bench_fine_scale.py /work/runs/{name}-default {image} -n 6 --variants default "
                f"--name {name}_default_3d", 2, needs=(f"/work/runs/{name}-default",),
                note=f"the same seeds on the default-VAE model `/work/runs/{name}-default` (`microlad train {image} --out "
                     f"/work/runs/{name}-default --threads 1`), baseline of fine_scale_{name}_vae24_3d"))),
    Entry("fidelity_composite_calibrated",
          f"python bench/bench_fidelity.py /work/runs/cal/composite-mirror {COMPOSITE} --name composite_calibrated", 10,
          needs=("/work/runs/cal/composite-mirror",), note=CAL_NOTE),
    Entry("fidelity_nmc_calibrated",
          f"python bench/bench_fidelity.py /work/runs/cal/nmc-default {NMC} --name nmc_calibrated", 10,
          needs=("/work/runs/cal/nmc-default",), note=CAL_NOTE),
    Entry("fine_scale_carbonate_mirror",
          f"python bench/bench_fine_scale.py /work/runs/carbonate-mirror {CARBONATE} -n 4 --variants prior_2d,default "
          "--name carbonate_mirror", 2, needs=("/work/runs/carbonate-mirror",),
          note=f"a carbonate model trained with the uniform (mirrored) patch sampler and default settings: `microlad train "
               f"{CARBONATE} --out /work/runs/carbonate-mirror --threads 1` (2026-12-06, 51 min at load 5), not in the repository"),
    Entry("fine_scale_composite_mirror",
          f"python bench/bench_fine_scale.py /work/runs/composite-mirror {COMPOSITE} -n 4 --variants prior_2d,default "
          "--name composite_mirror", 2, needs=("/work/runs/composite-mirror",),
          note=f"the composite image with default settings and the uniform patch sampler: `microlad train {COMPOSITE} "
               "--out /work/runs/composite-mirror --threads 1` (2026-12-06, 51 min at load 5), not in the repository"),
    Entry("fine_scale_leopard_diag",
          "python bench/bench_fine_scale.py /work/runs/leopard-new $DATA/3d/leopard_100.npy -n 3 "
          "--variants prior_2d,axis0_only,k0,unsmoothed,plain --name leopard_diag", 2, needs=("/work/runs/leopard-new",),
          note="where the Leopard volumes' roughness arises (model: see levers_leopard)"),
    Entry("levers_carbonate_window0",
          "python bench/bench_fidelity_levers.py /work/runs/carbonate-mirror --phase 1 --size 64 -n 6 --variants smooth "
          "--name carbonate_window0", 2, needs=("/work/runs/carbonate-mirror",),
          note="the bundled carbonate weights without a coupling window (every step coupled): SA, spanning, τ of the pore phase"),
    Entry("levers_carbonate_window025",
          "python bench/bench_fidelity_levers.py carbonate --phase 1 --size 64 -n 6 --variants smooth --name carbonate_window025", 2,
          note="the bundled carbonate model (window 0.25), same seeds as levers_carbonate_window0"),
    Entry("levers_composite_window0",
          "python bench/bench_fidelity_levers.py /work/runs/composite-mirror --phase 2 --size 64 -n 6 --variants smooth "
          "--name composite_window0", 2, needs=("/work/runs/composite-mirror",),
          note="composite, every step coupled: SA, spanning, τ of phase 2"),
    Entry("levers_composite_window075",
          "python bench/bench_fidelity_levers.py /work/runs/cal/composite-mirror --phase 2 --size 64 -n 6 --variants smooth "
          "--name composite_window075", 2, needs=("/work/runs/cal/composite-mirror",), note=CAL_NOTE),
    Entry("levers_berea_window025",
          "python bench/bench_fidelity_levers.py /work/runs/cal/berea-default --truth berea_400.npz -n 4 --size 128 "
          "--variants smooth --name berea_window025", 15, needs=("/work/runs/cal/berea-default", BEREA),
          note="a copy of bench/models/berea-default with the calibrated window 0.25 (`python scripts/calibrate_model.py`); "
               "compare the first 4 seeds of levers_berea (window 0)"),
    Entry("levers_berea_default4",
          "python bench/bench_fidelity_levers.py bench/models/berea-default --truth berea_400.npz -n 4 --size 128 "
          "--variants smooth --name berea_default4", 5, needs=(BEREA,),
          note="the committed Berea model's default reconstruction on levers_berea_avgaxes's seeds"),
    Entry("levers_berea_avgaxes",
          "python bench/bench_fidelity_levers.py bench/models/berea-default --truth berea_400.npz -n 4 --size 128 "
          "--variants smooth --average-axes --name berea_avgaxes", 6, needs=(BEREA,),
          note="L-MPDD averaging the three orientations' predictions at every step: does a 3D-symmetric coarse layout connect the pores?"),
    Entry("slice_connectivity_berea",
          f"python bench/diag_slice_connectivity.py bench/models/berea-default {BEREA} -n 4 --size 128 --every 4 "
          "--variants default,unsmoothed,plain --name berea", 12,
          note="2D connectivity statistics (weighted cluster size, largest cluster, Euler, lineal path) of the rock's slices, "
               "of default reconstructions' slices and of the 2D prior's samples: is there a 2D-visible connectivity deficit?"),
    Entry("directional_berea",
          f"python bench/diag_directional.py {BEREA} --phase 0 --size 128 --set default=/tmp/directional/default "
          "--set ancestral=/tmp/directional/ancestral --set tau_vf_guided=/tmp/directional/tau_vf --set tau_guided=/tmp/directional/tau "
          "--name berea", 85,
          setup=("microlad reconstruct bench/models/berea-default --shape 128 128 128 -n 4 --seed 1000 "
                 "--out /tmp/directional/default --overwrite --no-progress",
                 "microlad reconstruct bench/models/berea-default --shape 128 128 128 -n 4 --seed 1000 --sampler ancestral "
                 "--steps 100 --out /tmp/directional/ancestral --overwrite --no-progress",
                 "microlad generate bench/models/berea-default --shape 128 128 128 --target tau:0@z=4.96 "
                 "--target vf:0=0.1979 --seed 2000 -n 4 --out /tmp/directional/tau_vf --overwrite --no-progress",
                 "microlad generate bench/models/berea-default --shape 128 128 128 --target tau:0@z=4.96 "
                 "--seed 2000 -n 2 --out /tmp/directional/tau --overwrite --no-progress"),
          note="S2 and lineal path along axes, face and body diagonals, 3D Euler characteristic, spanning and tau of the "
               "rock, default reconstructions and tau-guided volumes: which statistic tracks tau?"),
    Entry("hysteresis_berea",
          f"python bench/diag_hysteresis_labels.py bench/models/berea-default {BEREA} -n 4 --size 128 --cores 1,0.25,0.05 "
          "--name berea", 15,
          note="hysteresis labelling of the pore probabilities (keep weak paths connected to strong cores): what it buys in "
               "connectivity and costs in perimeter and S2"),
    Entry("levers_leopard",
          "python bench/bench_fidelity_levers.py /work/runs/leopard-new --truth leopard_100.npy --phase 1 --size 64 -n 6 "
          "--variants default,smooth --name leopard", 3, needs=("/work/runs/leopard-new",),
          note="/work/runs/leopard-new: `microlad train $DATA/3d/leopard_100.npy --out /work/runs/leopard-new --threads 1` "
               "(default settings, 2026-12-06, 25.5 min at load 2-3), then `python scripts/restat_model.py` (the tiles fix) and "
               "`python scripts/calibrate_model.py` (window 0); not in the repository"),
    Entry("levers_leopard_ancestral200",
          "python bench/bench_fidelity_levers.py /work/runs/leopard-new --truth leopard_100.npy --phase 1 --size 64 -n 6 "
          "--variants default,smooth --sampler ancestral --steps 200 --name leopard_ancestral200", 6, needs=("/work/runs/leopard-new",),
          note="Leopard with a stochastic 200-step L-MPDD sampler instead of 25 DDIM steps (does error contraction remove the speckle?); model: see levers_leopard"),
    Entry("levers_sofc",
          "python bench/bench_fidelity_levers.py sofc-anode -n 6 --size 64 --phase 1 --variants default,smooth --name sofc", 2,
          note="the bundled SOFC model unsmoothed vs smoothed on the same latents: perimeter, SA, clusters, spanning and τ of phase 1"),
    Entry("levers_berea",
          "python bench/bench_fidelity_levers.py bench/models/berea-default --truth berea_400.npz -n 8 --size 128 "
          "--variants default,smooth --name berea", 20, needs=(BEREA,),
          note="8 × 128³ reconstructions of the committed Berea model, unsmoothed and smoothed, against the rock's 27 sub-volumes"),
    Entry("groundtruth_berea", "python bench/bench_groundtruth.py /work/runs/berea_default", 12,
          needs=("/work/runs/berea_default", BEREA),
          note="/work/runs/berea_default is the Berea model of 2026-11-22, not in the repository; bench/models/berea-default "
               "(default settings, trained 2026-12-03 for this bench) is in the repository but has other weights: "
               "`python bench/bench_groundtruth.py bench/models/berea-default` measures it, it does not reproduce this table"),
    Entry("groundtruth_berea_steps50",
          "python bench/bench_groundtruth.py /work/runs/berea_default --steps 50 --name berea_steps50", 12,
          needs=("/work/runs/berea_default", BEREA),
          note="as groundtruth_berea: the model directory is not in the repository; bench/models/berea-default is a "
               "different model"),
    Entry("lmpdd_variants_sofc", f"python bench/bench_lmpdd_variants.py {SOFC_MODEL} {SOFC} --name sofc", 10,
          note="13 sampler variants × 4 volumes of 64³"),
    Entry("pixel_baseline",
          f"python bench/bench_pixel_baseline.py {PIXEL_DIR} {SOFC} --model sofc-anode --n-ours 3 --n-pixel 3 2 "
          "--pixel-steps 25 100 --ancestral-timed 20", 9, needs=(PIXEL_DIR,), note=PIXEL_NOTE),
    Entry("pixel_baseline_ddpm1000", f"python bench/bench_pixel_ddpm_full.py {PIXEL_DIR} {SOFC} --seed 1000", 23,
          needs=(PIXEL_DIR,), note=PIXEL_NOTE + "; reads ours from pixel_baseline.json"),
    _guidance("guidance_sofc_partial_vf_s2", "--sets vf,s2 --seeds 3", 18, stale=RULE_CAP1),
    _guidance("guidance_sofc_partial_sa", "--sets sa --phases 0 --seeds 3", 5, stale=RULE_CAP1),
    _guidance("guidance_sofc_partial_deff", "--sets deff --phases 0 --deff-factors 1.5 --seeds 2", 5, stale=RULE_CAP1),
    _guidance("guidance_sofc_partial_vf2_steps100", "--sets vf --phases 2 --seeds 3 --steps 100", 7, stale=RULE_CAP1),
    _guidance("guidance_sofc_partial_deff_half", "--sets deff --phases 0 --deff-factors 0.5 --seeds 2", 4, stale=RULE_CAP1),
    _guidance("guidance_sofc_partial_s2_w3", "--sets s2 --seeds 3 --weight s2=3", 4, stale=RULE_CAP1),
    _guidance("guidance_sofc_partial_sa_w3", "--sets sa --phases 0 --seeds 3 --weight sa=3", 4, stale=RULE_CAP1),
    _guidance("guidance_sofc_partial_s2_steps120", "--sets s2 --seeds 3 --steps 120", 6, stale=RULE_CAP1),
    _guidance("guidance_sofc_gain4_sa", "--sets sa --phases 0 --seeds 3", 6, stale=RULE_GAIN4),
    _guidance("guidance_sofc_gain4_vf", "--sets vf --seeds 3", 14, stale=RULE_GAIN4),
    _guidance("guidance_carbonate_partial_vf", "--sets vf --phases 1 --seeds 3", 3, model=OLD_CARBONATE, image=CARBONATE,
              needs=(OLD_CARBONATE,),
              note="/work/runs/carbonate, not in the repository; whether it held the weights later bundled as `carbonate` "
                   "was not recorded, so the bundled model is not substituted"),
    _guidance("guidance_sofc_loggain_vf01", "--sets vf --phases 0 1 --seeds 3", 6),
    _guidance("guidance_sofc_loggain_sa", "--sets sa --phases 0 --seeds 3", 4),
    _guidance("guidance_sofc_loggain_vf2", "--sets vf --phases 2 --seeds 3", 3),
    _guidance("guidance_sofc_loggain_s2", "--sets s2 --seeds 3", 3),
    _guidance("guidance_sofc_vf", "--sets vf --seeds 10", 35, stale=CELL_PLANES, note="issue #10's VF control: every phase, 10 × 64³"),
    _guidance("guidance_carbonate_vf", "--sets vf --seeds 10", 15, model="carbonate", image=CARBONATE, stale=CELL_PLANES,
              note="issue #10's VF control on the bundled carbonate model, both phases, 10 × 64³"),
    _guidance("guidance_sofc_sa", "--sets sa --seeds 10", 20, stale=CELL_PLANES, note="issue #10's surface-area control: every phase, 10 × 64³"),
    _guidance("guidance_sofc_deff", "--sets deff --seeds 10", 110,
              note="issue #10's SOFC transport item: each phase, D_eff along x = 1.5× and 0.5× the unguided volume's, 10 × 64³ per case"),
    _guidance("guidance_sofc_sa_ext", "--sets sa --phases 1 2 --seeds 10", 25, stale=CELL_PLANES,
              note="issue #10's far surface-area targets (phases 1 and 2) with the extension and checkpoint selection, 10 × 64³"),
    _guidance("guidance_carbonate_deff", "--sets deff --deff-target 1=0.02 --seeds 10", 30, model="carbonate", image=CARBONATE,
              note="issue #10's carbonate transport item: pore D_eff along x = 0.02, 10 × 64³ (unguided volumes often do not percolate)"),
    _guidance("guidance_sofc_s2_image", f"--sets s2 --s2-target image --seeds 10", 20, stale=ONE_S2_OFFSET,
              note="issue #10's S2-guided set with the metric's own reference as the target (s2=IMAGE), 10 × 64³"),
    _guidance("guidance_sofc_s2_image_steps120", f"--sets s2 --s2-target image --seeds 10 --steps 120", 10, stale=ONE_S2_OFFSET,
              note="the SOFC S2-guided set with twice the steps (does the 1 % goal need more steps?)"),
    _guidance("guidance_carbonate_s2_image", f"--sets s2 --s2-target image --seeds 10", 15, model="carbonate", image=CARBONATE,
              stale=ONE_S2_OFFSET, note="issue #10's carbonate S2-guided set, target = the image's own S2 (s2=IMAGE), 10 × 64³"),
    _guidance("guidance_sofc_s2_image_axis", f"--sets s2 --s2-target image --seeds 10", 10, stale=CELL_PLANES,
              note="issue #10's SOFC S2-guided set with per-axis S2 calibration offsets (same seeds as guidance_sofc_s2_image)"),
    _guidance("guidance_carbonate_s2_image_axis", f"--sets s2 --s2-target image --seeds 10", 10, model="carbonate", image=CARBONATE,
              stale=CELL_PLANES,
              note="issue #10's carbonate S2-guided set with per-axis S2 calibration offsets (same seeds as guidance_carbonate_s2_image)"),
    _guidance("guidance_sofc_sa_offsets", "--sets sa --seeds 10", 25, stale=FEW_CHECKPOINTS,
              note="issue #10's surface-area control with the in-cell plane offsets (every phase, 10 × 64³, seeds as guidance_sofc_sa)"),
    _guidance("guidance_sofc_s2_image_offsets", f"--sets s2 --s2-target image --seeds 10", 10, stale=FEW_CHECKPOINTS,
              note="issue #10's SOFC S2-guided set with the plane offsets and S2 calibration per axis and offset"),
    _guidance("guidance_carbonate_s2_image_offsets", f"--sets s2 --s2-target image --seeds 10", 10, stale=FEW_CHECKPOINTS, model="carbonate", image=CARBONATE,
              note="issue #10's carbonate S2-guided set with the plane offsets and S2 calibration per axis and offset"),
    _guidance("guidance_sofc_s2_image_n30", f"--sets s2 --s2-target image --seeds 30", 25, stale=FEW_CHECKPOINTS,
              note="issue #10's SOFC S2-guided set with 30 volumes (how much of the 10-volume figure is sampling noise?)"),
    _guidance("guidance_carbonate_s2_image_n30", f"--sets s2 --s2-target image --seeds 30", 25, stale=FEW_CHECKPOINTS, model="carbonate", image=CARBONATE,
              note="issue #10's carbonate S2-guided set with 30 volumes"),
    _guidance("guidance_sofc_s2_image_cal10", "--sets s2 --s2-target image --seeds 10 --calibrate-every 10", 10, stale=FEW_CHECKPOINTS,
              note="issue #10's SOFC S2-guided set calibrated every 10 steps (is the S2 offset stale between calibrations?)"),
    _guidance("guidance_sofc_s2_image_cal5", "--sets s2 --s2-target image --seeds 10 --calibrate-every 5", 15,
              note="issue #10's SOFC S2-guided set calibrated every 5 steps (the default for S2 targets for a few hours, reverted)"),
    _guidance("guidance_sofc_s2_image_cal3", "--sets s2 --s2-target image --seeds 10 --calibrate-every 3", 20, stale=FEW_CHECKPOINTS,
              note="issue #10's SOFC S2-guided set calibrated every 3 steps (do still more checkpoints help?)"),
    _guidance("guidance_sofc_s2_image_ck5", "--sets s2 --s2-target image --seeds 10 --checkpoint-every 5", 15,
              note="issue #10's SOFC S2-guided set: 3 calibrations as by default, a measured checkpoint every 5 steps"),
    _guidance("guidance_carbonate_s2_image_ck5", "--sets s2 --s2-target image --seeds 10 --checkpoint-every 5", 15,
              model="carbonate", image=CARBONATE,
              note="issue #10's carbonate S2-guided set: 3 calibrations as by default, a measured checkpoint every 5 steps"),
    _guidance("guidance_sofc_s2_image_latent_mean", "--sets s2 --s2-target image --seeds 10", 15,
              note="issue #10's SOFC S2-guided set with the default settings of 2026-12-07 evening: the start is the "
                   "latent-mean-matched L-MPDD latent (compare guidance_sofc_s2_image_ck5, the same settings before)"),
    _guidance("guidance_carbonate_s2_image_latent_mean", "--sets s2 --s2-target image --seeds 10", 15,
              model="carbonate", image=CARBONATE,
              note="issue #10's carbonate S2-guided set from the latent-mean-matched start (compare "
                   "guidance_carbonate_s2_image_ck5)"),
    _guidance("guidance_sofc_s2_image_guard", "--sets s2 --s2-target image --seeds 10", 15, stale=NO_POLISH,
              note="issue #10's SOFC S2-guided set with the checkpoint guard protecting only the start's and the last "
                   "step's spannings (eleventh session; compare guidance_sofc_s2_image_latent_mean)"),
    _guidance("guidance_carbonate_s2_image_guard", "--sets s2 --s2-target image --seeds 10", 15, stale=NO_POLISH,
              model="carbonate", image=CARBONATE,
              note="issue #10's carbonate S2-guided set with the checkpoint guard protecting only the start's and the "
                   "last step's spannings (compare guidance_carbonate_s2_image_latent_mean)"),
    _guidance("guidance_sofc_s2_image_nopolish", "--sets s2 --s2-target image --seeds 10 --polish 0", 15,
              note="issue #10's SOFC S2-guided set without the label polish (the same volumes as guidance_sofc_s2_image_guard, "
                   "with perimeter, surface area and spanning measured)"),
    _guidance("guidance_carbonate_s2_image_nopolish", "--sets s2 --s2-target image --seeds 10 --polish 0", 15,
              model="carbonate", image=CARBONATE,
              note="issue #10's carbonate S2-guided set without the label polish (the same volumes as "
                   "guidance_carbonate_s2_image_guard, with perimeter, surface area and spanning measured)"),
    _guidance("guidance_sofc_s2_image_polish", "--sets s2 --s2-target image --seeds 10", 18,
              note="issue #10's SOFC S2-guided set with the label polish (default since 2026-12-07, night; compare "
                   "guidance_sofc_s2_image_nopolish, the same runs without it)"),
    _guidance("guidance_carbonate_s2_image_polish", "--sets s2 --s2-target image --seeds 10", 18,
              model="carbonate", image=CARBONATE,
              note="issue #10's carbonate S2-guided set with the label polish (compare guidance_carbonate_s2_image_nopolish)"),
    _guidance("guidance_carbonate_s2_image_steps120", "--sets s2 --s2-target image --seeds 10 --steps 120", 20,
              model="carbonate", image=CARBONATE,
              note="issue #10's carbonate S2-guided set with 120 steps (its guidance start has half the pore fraction; is 60 too few?)"),
    _guidance("guidance_sofc_deff_recheck", "--sets deff --seeds 3", 35,
              note="issue #10's SOFC transport item re-checked on today's reconstruction (per-phase smoothing), 3 × 64³ per phase and factor"),
    _guidance("guidance_sofc_s2_image_n30_cal5", "--sets s2 --s2-target image --seeds 30 --calibrate-every 5", 45,
              note="issue #10's SOFC S2-guided set, 30 volumes, with 12 calibrations per run"),
    _guidance("guidance_carbonate_s2_image_n30_cal5", "--sets s2 --s2-target image --seeds 30 --calibrate-every 5", 35, model="carbonate", image=CARBONATE,
              note="issue #10's carbonate S2-guided set, 30 volumes, with 12 calibrations per run"),
    _guidance("guidance_sofc_vf_offsets", "--sets vf --seeds 10", 20, note="issue #10's VF control with the plane offsets (every phase, 10 × 64³)"),
    _guidance("guidance_carbonate_vf_offsets", "--sets vf --seeds 10", 15, model="carbonate", image=CARBONATE,
              note="issue #10's carbonate VF control with the plane offsets (both phases, 10 × 64³)"),
    _guidance("guidance_sofc_speed_idle_cal5", "--sets vf,s2,sa --phases 1 --seeds 2 --threads 2", 5, stale=CAL5_DEFAULT,
              note="issue #10's speed item on an idle machine with 12 calibrations per S2 run: VF, S2 and SA targets at 64³, 2 torch threads"),
    _guidance("guidance_sofc_speed_idle_polish", "--sets vf,s2,sa --phases 1 --seeds 2 --threads 2", 4,
              note="issue #10's speed item on an idle machine with the label polish after S2-guided runs (default since "
                   "2026-12-07, night): VF, S2 and SA targets at 64³, 2 torch threads"),
    _guidance("guidance_sofc_speed_idle_ck5", "--sets vf,s2,sa --phases 1 --seeds 2 --threads 2", 4, stale=NO_POLISH,
              note="issue #10's speed item on an idle machine with checkpoints every 5 steps for S2 and SA targets (the default since 2026-12-07): VF, S2 and SA targets at 64³, 2 torch threads"),
    _guidance("guidance_sofc_sa_ck5", "--sets sa --seeds 10", 40,
              note="issue #10's surface-area control on the default since 2026-12-07 (checkpoints every 5 steps, spanning kept): every phase, 10 × 64³"),
    _guidance("guidance_sofc_speed_idle_offsets", "--sets vf,s2,sa --phases 1 --seeds 2 --threads 2", 3, stale=FEW_CHECKPOINTS,
              note="issue #10's speed item on an idle machine with the plane offsets: VF, S2 and SA targets at 64³, 2 torch threads"),
    _guidance("guidance_sofc_speed_idle", "--sets vf,s2,sa --phases 1 --seeds 2 --threads 2", 3, stale=CELL_PLANES,
              note="issue #10's speed item on an idle machine: VF, S2 and SA targets at 64³, 2 torch threads (the CLI default here)"),
    Entry("guidance_berea_tau",
          f"python bench/bench_guidance.py bench/models/berea-default {BEREA} --name berea_tau --sets tau --tau 0@z "
          f"--tau-rock {BEREA} --seeds 5 --size 128", 45, needs=(BEREA,),
          note="the measured-property target of issue #10: pore τ along z of the whole rock, 5 × 128³ (about 8 min each)"),
    Entry("guidance_berea_tau_vf",
          f"python bench/bench_guidance.py bench/models/berea-default {BEREA} --name berea_tau_vf --sets tau --tau 0@z "
          f"--tau-rock {BEREA} --tau-with-vf --seeds 5 --size 128", 45, needs=(BEREA,),
          note="the measured-property target with the rock's porosity pinned too (vf:0 = the rock's pore fraction), 5 × 128³"),
    Entry("guidance_berea_tau_vf_default",
          f"python bench/bench_guidance.py bench/models/berea-default {BEREA} --name berea_tau_vf_default --sets tau --tau 0@z "
          f"--tau-rock {BEREA} --tau-with-vf --seeds 3 --size 128", 30, needs=(BEREA,),
          note="as guidance_berea_tau_vf with the defaults of 2026-12-08 (latent-mean matching), 3 × 128³: the reference "
               "for guidance_berea_tau_vf_grains"),
    Entry("guidance_berea_tau_vf_grains",
          f"python bench/bench_guidance.py bench/models/berea-default {BEREA} --name berea_tau_vf_grains --sets tau --tau 0@z "
          f"--tau-rock {BEREA} --tau-with-vf --seeds 3 --size 128 --init grains", 40, needs=(BEREA,),
          note="the same targets from reconstruct's grain start (generate(init='grains'), roughness calibrated), same seeds"),
    # L-MPDD's latent drift (match_latent_mean, 2026-12-07 evening): the same seeds without it, with it (the
    # default since) and with the std matched too
    *(Entry(f"levers_berea_moments_{m}",
            "python bench/bench_fidelity_levers.py bench/models/berea-default --truth berea_400.npz -n 8 --size 128 "
            f"--variants smooth --moments {m} --name berea_moments_{m}", 9, needs=(BEREA,),
            note="8 × 128³ default reconstructions of the committed Berea model; --moments: none = L-MPDD before "
                 "2026-12-07 evening, mean = match_latent_mean (the default since), both = mean and std matched")
      for m in ("none", "mean", "both")),
    *(Entry(f"levers_leopard_moments_{m}",
            "python bench/bench_fidelity_levers.py /work/runs/leopard-new --truth leopard_100.npy --phase 1 --size 64 -n 6 "
            f"--variants smooth --moments {m} --name leopard_moments_{m}", 2, needs=("/work/runs/leopard-new",),
            note="Leopard without / with latent-mean matching; model: see levers_leopard")
      for m in ("none", "mean")),
    *(Entry(f"levers_{name}_moments_{m}",
            f"python bench/bench_fidelity_levers.py {name_model} --phase 1 --size 64 -n 6 --variants smooth --moments {m} "
            f"--name {name}_moments_{m}", 2,
            note="3D surface area, spanning and tortuosity of phase 1 without / with latent-mean matching (6 × 64³)")
      for name, name_model in (("sofc", "sofc-anode"), ("carbonate", "carbonate")) for m in ("none", "mean")),
    *(Entry(f"fine_scale_{name}_latent_mean",
            f"python bench/bench_fine_scale.py {model} {image} -n 6 --variants no_moments,default,moments,moments_std "
            f"--name {name}_latent_mean", 4, needs=needs,
            note="the default reconstruction without latent-mean matching (no_moments), with it (default), with the mean "
                 "and std matched (moments) and with the std alone (moments_std)")
      for name, model, image, needs in (("sofc", SOFC_MODEL, SOFC, ()), ("carbonate", CARBONATE_MODEL, CARBONATE, ()),
                                        *DEFAULT_THREE_PHASE)),
    # the bundled carbonate model's coupling window re-calibrated with latent-mean matching on (eleventh session):
    # calibrate_coupling_stop (training seed, 4 × 64³ per window) would now pick 0.5 instead of the stored 0.25;
    # not adopted (30 volumes: paper S2 error 2.00 % against 0.45 %)
    Entry("fine_scale_carbonate_window05",
          f"python bench/bench_fine_scale.py {CARBONATE_MODEL} {CARBONATE} -n 10 --variants default,coupled_until_0.5 "
          "--name carbonate_window05", 6,
          note="carbonate, 10 × 64³: the stored window 0.25 (default) against 0.5 (the re-calibration's pick)"),
    Entry("levers_carbonate_window05",
          "python bench/bench_fidelity_levers.py /work/runs/carb05 --phase 1 --size 64 -n 6 --variants smooth --moments mean "
          "--name carbonate_window05", 2, needs=("/work/runs/carb05",),
          note="3D pore surface area, spanning and tortuosity with window 0.5 (compare levers_carbonate_moments_mean, same "
               "seeds, window 0.25); /work/runs/carb05 = the bundled carbonate model with config.reconstruct.coupling_stop "
               "set to 0.5, not in the repository"),
    Entry("fidelity_carbonate_window05_n30",
          f"python bench/bench_fidelity.py /work/runs/carb05 {CARBONATE} --name carbonate_window05_n30 -n 30 --seed 3000", 6,
          needs=("/work/runs/carb05",), note="paper S2 error with window 0.5, 30 × 64³ (model: see levers_carbonate_window05)"),
    Entry("fidelity_carbonate_window025_n30",
          f"python bench/bench_fidelity.py {CARBONATE_MODEL} {CARBONATE} --name carbonate_window025_n30 -n 30 --seed 3000", 6,
          note="paper S2 error with the stored window 0.25, 30 × 64³, same seeds as fidelity_carbonate_window05_n30"),
    Entry("fine_scale_sofc_window025",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 10 --variants default,coupled_until_0.25 --name sofc_window025", 8,
          note="SOFC, 10 × 64³: the stored window (every step coupled) against 0.25, the pick of a re-calibration with "
               "latent-mean matching on (not adopted: phase 0's small-r S2 stays above 2 %)"),
    Entry("fine_scale_sofc_polish",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 10 --variants polish_s2 --name sofc_polish", 4,
          stale=UNGUARDED_POLISH,
          note="#11: the default reconstruction, then the label polish toward the training S2 alone (10 × 64³, same "
               "seeds as the default rows of fine_scale_sofc_window025; perimeter rises to +2–4 %)"),
    Entry("fine_scale_carbonate_polish",
          f"python bench/bench_fine_scale.py carbonate {CARBONATE} -n 10 --variants polish_s2 --name carbonate_polish", 3,
          stale=UNGUARDED_POLISH,
          note="#11: the default carbonate reconstruction, then the label polish toward the training S2 alone (10 × 64³)"),
    Entry("fine_scale_sofc_polish_perimeter",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 10 --variants polish --name sofc_polish_perimeter", 4,
          stale=UNGUARDED_POLISH,
          note="#11: reconstruct(polish=100), the opt-in label polish toward the training S2 and slice perimeter with "
               "the matched fractions held (10 × 64³, seeds 1000–1009)"),
    Entry("fine_scale_carbonate_polish_perimeter",
          f"python bench/bench_fine_scale.py carbonate {CARBONATE} -n 10 --variants polish --name carbonate_polish_perimeter", 3,
          stale=UNGUARDED_POLISH,
          note="#11: reconstruct(polish=100) on the carbonate model (10 × 64³, seeds 1000–1009)"),
    Entry("levers_berea_polish_guard",
          "python bench/bench_fidelity_levers.py bench/models/berea-default --truth berea_400.npz -n 8 --size 128 "
          "--variants smooth,polish --name berea_polish_guard", 35,
          note="#11: the guarded reconstruct polish on the committed Berea model, 8 × 128³ (seeds 1000–1007, the same "
               "latents as levers_berea_moments_mean), against the rock's 27 sub-volumes of 128³"),
    Entry("levers_berea_grains",
          "python bench/bench_fidelity_levers.py bench/models/berea-default --truth berea_400.npz -n 8 --size 128 "
          "--variants smooth,grains_0.6,grains_0.8 --name berea_grains", 25,
          note="#11: reconstruct(init='grains') — L-MPDD from a Boolean grain pack built from the training fraction and "
               "slice perimeter, noised to 0.6 / 0.8 T — against the default on the committed Berea model, 8 × 128³"),
    Entry("levers_leopard_grains",
          "python bench/bench_fidelity_levers.py /work/runs/leopard-new --truth leopard_100.npy --phase 1 --size 64 -n 8 "
          "--variants smooth,grains_0.6,grains_0.8 --name leopard_grains", 4, needs=("/work/runs/leopard-new",),
          note="#11: the grain-pack start on Leopard, 8 × 64³ (model: see levers_leopard)"),
    Entry("levers_berea_grains_texture",
          "python bench/bench_fidelity_levers.py bench/models/berea-default --truth berea_400.npz -n 8 --size 128 "
          "--variants grainstex_0.6 --name berea_grains_texture", 12,
          note="#11: the grain-pack start with a free L-MPDD latent's fine scales blended in (tried, not a library "
               "option), 8 × 128³, same seeds as levers_berea_grains"),
    Entry("levers_leopard_grains_texture",
          "python bench/bench_fidelity_levers.py /work/runs/leopard-new --truth leopard_100.npy --phase 1 --size 64 -n 8 "
          "--variants grainstex_0.6 --name leopard_grains_texture", 2, needs=("/work/runs/leopard-new",),
          note="#11: the same on Leopard, 8 × 64³ (model: see levers_leopard)"),
    Entry("levers_berea_grains_rough",
          "python bench/bench_fidelity_levers.py bench/models/berea-default --truth berea_400.npz -n 8 --size 128 "
          "--variants grains_0.6 --grain-roughness 3 --name berea_grains_rough", 20,
          note="#11: reconstruct(init='grains', grain_roughness=3): the grain pack with rough surfaces, 8 × 128³, "
               "same seeds as levers_berea_grains"),
    Entry("levers_leopard_grains_rough",
          "python bench/bench_fidelity_levers.py /work/runs/leopard-new --truth leopard_100.npy --phase 1 --size 64 -n 8 "
          "--variants grains_0.6 --grain-roughness 3 --name leopard_grains_rough", 4, needs=("/work/runs/leopard-new",),
          note="#11: the rough grain pack on Leopard, 8 × 64³ (model: see levers_leopard)"),
    Entry("levers_berea_grains_auto",
          "python bench/bench_fidelity_levers.py bench/models/berea-default --truth berea_400.npz -n 8 --size 128 "
          "--variants grains_0.6 --grain-roughness auto --name berea_grains_auto", 12,
          note="#11: reconstruct(init='grains') with its default grain_roughness='auto' (A calibrated from 2D data on "
               "trial cubes), 8 × 128³, same seeds as levers_berea_grains"),
    Entry("levers_leopard_grains_auto",
          "python bench/bench_fidelity_levers.py /work/runs/leopard-new --truth leopard_100.npy --phase 1 --size 64 -n 8 "
          "--variants grains_0.6 --grain-roughness auto --name leopard_grains_auto", 3, needs=("/work/runs/leopard-new",),
          note="#11: the same on Leopard, 8 × 64³ (model: see levers_leopard)"),
    Entry("groundtruth_berea_grains",
          "python bench/bench_groundtruth.py bench/models/berea-default -n 8 --variants default,grains --name berea_grains", 22,
          needs=(BEREA,),
          note="#11: the committed Berea model, default and --init grains (calibrated roughness), 8 × 128³ (seeds "
               "2000–2007) against the rock's 27 sub-volumes: VF, surface area, Σ S2 and τ per axis"),
    Entry("levers_leopard_polish48",
          "python bench/bench_fidelity_levers.py /work/runs/leopard-new --truth leopard_100.npy --phase 1 --size 48 -n 8 "
          "--variants smooth,polish --name leopard_polish48", 3, needs=("/work/runs/leopard-new",),
          note="#11: the guarded reconstruct polish on Leopard (8 × 48³, the rock's eight 48³ sub-volumes as reference; "
               "model: see levers_leopard)"),
    Entry("fine_scale_sofc_polish_guard",
          f"python bench/bench_fine_scale.py sofc-anode {SOFC} -n 10 --variants polish --name sofc_polish_guard", 6,
          note="#11: reconstruct(polish=100) with the connectivity guard (no flip splits a 6-connected piece of a "
               "phase), 10 × 64³, seeds 1000–1009, the same volumes as fine_scale_sofc_polish_perimeter"),
    Entry("fine_scale_carbonate_polish_guard",
          f"python bench/bench_fine_scale.py carbonate {CARBONATE} -n 10 --variants polish --name carbonate_polish_guard", 4,
          note="#11: reconstruct(polish=100) with the connectivity guard on the carbonate model (10 × 64³, seeds 1000–1009)"),
    Entry("evaluate", f"python bench/bench_evaluate.py /tmp/ev_vols --reference {SOFC}", 3,
          setup=("microlad reconstruct sofc-anode --shape 64 64 64 -n 10 --out /tmp/ev_vols --overwrite --no-progress",),
          note="the first run recorded neither its volumes' seed nor the 'image + model' row's reference image; the CLI's "
               "default seed (0) and the model's training image, used here, reproduce its S2 errors (1.29 %, 2.43 %)"),
)

# Hand-kept snippets: text written by hand around the measured tables, no command of their own.
HAND_KEPT: dict[str, str] = {
    "design_measurements": "figures moved from docstrings; measured once when the code was written, no script",
    "fine_scale_findings": "findings around fine_scale_sofc, from scratch runs whose scripts were not kept",
    "guidance": "the guidance section's narrative and status table, over the guidance_* snippets",
}

REGISTRY: dict[str, Entry] = {e.name: e for e in ENTRIES}
