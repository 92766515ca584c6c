"""SDS guidance: the prior's sign, balancing, targets, determinism, and guidance moving a
tiny model's volume toward its target."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from microlad.diffusion import DDPMSchedule
from microlad.descriptors import percolating_axes
from microlad.errors import InputError
from microlad.guidance import NoiseRange, generate, parse_targets, parse_weights, sds_gradient, validate_targets
from microlad.guidance.balance import MAX_GAIN, balance, gain


class _Config:
    size_multiple = 1
    base_channels = 4
    channel_multipliers = (1,)


class ExactGaussianDenoiser(torch.nn.Module):
    """The exact denoiser of the prior x0 ~ N(mode, s² I): E[x0 | x_t] in closed form,
    returned in the schedule's parametrisation (ε or v)."""

    config = _Config()

    def __init__(self, schedule: DDPMSchedule, mode: torch.Tensor, s: float) -> None:
        super().__init__()
        self.schedule, self.s = schedule, s
        self.register_buffer("mode", mode)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = float(self.schedule.alphas_cumprod_f64[int(t[0])])
        m = self.mode.view(1, -1, 1, 1)
        gain = math.sqrt(a) * self.s**2 / (a * self.s**2 + 1 - a)
        x0 = m + gain * (x - math.sqrt(a) * m)
        eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
        return self.schedule.training_target(x0, eps, t)


@pytest.mark.parametrize("prediction", ["v", "epsilon"])
def test_sds_step_reduces_the_distance_to_the_mode_of_an_exact_prior(prediction):
    sched = DDPMSchedule(prediction_type=prediction)
    mode = torch.tensor([1.0, -2.0, 0.5, 3.0])
    unet = ExactGaussianDenoiser(sched, mode, s=0.1)
    z = torch.randn(4, 3, 5, 6, generator=torch.Generator().manual_seed(1)) * 2
    dist = lambda v: float((v - mode.view(-1, 1, 1, 1)).norm())  # noqa: E731
    for t in (20, 200, 500, 900):
        for axis in range(3):
            gen = torch.Generator().manual_seed(t + axis)
            g = sds_gradient(unet, sched, z, axis, t, gen)
            assert dist(z - 0.1 * g) < dist(z) - 1e-3  # descending the SDS gradient approaches the mode
            assert dist(z + 0.1 * g) > dist(z)  # the reference code's sign moves away
            # it is DreamFusion's w(t)·(ε̂ − ε) with w = √((1−ᾱ)/ᾱ): recompute ε̂ − ε independently
            gen = torch.Generator().manual_seed(t + axis)
            eps = torch.randn(z.shape, generator=gen)
            a = float(sched.alphas_cumprod_f64[t])
            zt = math.sqrt(a) * z + math.sqrt(1 - a) * eps
            m = mode.view(-1, 1, 1, 1)
            x0 = m + math.sqrt(a) * 0.01 / (a * 0.01 + 1 - a) * (zt - math.sqrt(a) * m)
            eps_hat = (zt - math.sqrt(a) * x0) / math.sqrt(1 - a)
            torch.testing.assert_close(g, math.sqrt((1 - a) / a) * (eps_hat - eps), rtol=1e-3, atol=1e-4)


def test_noise_range_anneals_downward_and_stays_in_range():
    nr = NoiseRange(t_min=0.02, t_start=0.4, t_end=0.1)
    gen = torch.Generator().manual_seed(0)
    early = [nr.draw(0, 100, 1000, gen) for _ in range(200)]
    late = [nr.draw(99, 100, 1000, gen) for _ in range(200)]
    assert min(early) >= 20 and max(early) <= 400 and max(early) > 300
    assert min(late) >= 20 and max(late) <= 100
    with pytest.raises(InputError):
        NoiseRange(t_min=0.5, t_start=0.4)


def test_balancing_gives_finite_gradients_bounded_by_weight_times_gain_times_prior_norm():
    gen = torch.Generator().manual_seed(0)
    for scale in (1e-30, 1e-6, 1.0, 1e12):
        g = torch.randn(4, 4, 4, 4, generator=gen) * scale
        g[0, 0, 0, 0] = float("nan")
        g[0, 0, 0, 1] = float("inf")
        for rho in (0.0, 0.3, 1.0, 2.5, 50.0, 1e30, float("inf"), float("nan")):
            out, norm = balance(g, prior_norm=7.0, residual=rho, weight=2.0)
            assert torch.isfinite(out).all() and math.isfinite(norm)
            assert float(out.norm()) <= 2.0 * 7.0 * MAX_GAIN * (1 + 1e-5)
            expect = 1.0 if rho != rho else (rho if rho <= 1 else min(1 + math.log(rho), MAX_GAIN))  # NaN: ρ = 1
            assert float(out.norm()) == pytest.approx(14.0 * expect, rel=1e-4, abs=1e-12)
            if norm > 0 and float(out.norm()) > 0:  # direction kept: parallel to the finite part of g
                gf = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                gf = gf / gf.abs().max()
                cos = float((out * gf).sum() / (out.norm() * gf.norm()))
                assert cos == pytest.approx(1.0, abs=1e-4)
    assert float(balance(torch.zeros(3), 5.0, 2.0, 1.0)[0].norm()) == 0.0
    half, _ = balance(torch.ones(4), 3.0, 0.5, 1.0)  # inside the tolerance: linear taper
    assert float(half.norm()) == pytest.approx(1.5)


def test_balanced_push_does_not_vanish_near_the_target_and_grows_with_the_residual():
    # the push is nonzero for any residual > 0 (so a term still holds its value against the
    # prior close to its target), zero only at it, monotone and continuous in the residual,
    # equal to the prior's norm at one tolerance unit, capped at MAX_GAIN x the prior's norm far away
    g = torch.ones(2, 3, 3, 3)
    far = math.exp(MAX_GAIN - 1)
    norms = [float(balance(g, 5.0, r, 1.0)[0].norm()) for r in (0.0, 0.01, 0.2, 1.0, 2.0, far / 2, far, 10 * far)]
    assert norms[0] == 0.0 and norms[1] == pytest.approx(0.05) and norms[3] == pytest.approx(5.0)
    assert norms[1] < norms[2] < norms[3] < norms[4] < norms[5] < norms[6]
    assert norms[-1] == pytest.approx(norms[-2]) == pytest.approx(5.0 * MAX_GAIN)
    assert gain(1 - 1e-9) == pytest.approx(gain(1 + 1e-9), abs=1e-6)  # no jump at the knee
    assert (gain(1 + 1e-4) - gain(1)) / 1e-4 == pytest.approx(1.0, rel=1e-3)  # nor a kink
    assert gain(-3.0) == pytest.approx(gain(3.0))  # the residual's sign does not flip the push
    # the weight scales the push linearly, independent of the raw gradient's magnitude
    assert float(balance(g * 1e-9, 5.0, 1.0, 0.5)[0].norm()) == pytest.approx(2.5, rel=1e-5)


def test_target_parsing_names_and_weights():
    t = parse_targets(["vf:1=0.40", "sa:0=0.08", "s2=train", "deff:0@x=0.05", "tau:0@z=5.0", "deff2d:2@y=0.2"])
    assert [x.name for x in t] == ["vf:1", "sa:0", "s2", "deff:0@x", "tau:0@z", "deff2d:2@y"]
    assert t[3].axis == 2 and t[4].axis == 0 and t[0].value == pytest.approx(0.4)
    same = parse_targets({"vf:1": 0.4, "s2": "train", "deff:0@x": 0.05})
    assert [x.name for x in same] == ["vf:1", "s2", "deff:0@x"]
    w = parse_weights(["vf=3", "prior=0.5"], t)
    assert w["vf:1"] == 3.0 and w["prior"] == 0.5 and w["sa:0"] == 1.0
    validate_targets(t, 3, has_training_s2=True)


@pytest.mark.parametrize(
    "specs, fragment",
    [
        (["vf:1"], "malformed"),
        (["vf1=0.3"], "unknown kind"),
        (["vf:a=0.3"], "phase"),
        (["vf:0=1.2"], "(0, 1)"),
        (["vf:0=0"], "(0, 1)"),
        (["vf:0=0.7", "vf:1=0.5"], "sum"),
        (["sa:0=-0.01"], "negative"),
        (["deff:0@x=1.5"], "(0, 1]"),
        (["deff:0@w=0.1"], "axis"),
        (["deff:0=0.1"], "axis"),
        (["tau:0@z=0.5"], ">= 1"),
        (["vf:0=0.3", "vf:0=0.4"], "more than once"),
        (["vf:7=0.3"], "unknown phase"),
    ],
)
def test_invalid_targets_are_one_line_input_errors(specs, fragment):
    with pytest.raises(InputError) as exc:
        validate_targets(parse_targets(specs), 3, has_training_s2=True)
    assert fragment.lower() in str(exc.value).lower() and "\n" not in str(exc.value)


@pytest.fixture(scope="module")
def tiny_model():
    from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig
    from microlad.model import MicroladModel

    torch.manual_seed(0)
    vae = CategoricalVAE(VAEConfig(n_phases=2, base_channels=8, norm_groups=4))
    unet = UNet2D(UNetConfig(in_channels=4, base_channels=16, channel_multipliers=(1, 2), norm_groups=4, attention_heads=2))
    c = 8
    stats = {"volume_fraction": [0.6, 0.4], "s2_radial_mean": [[0.6 - 0.2 * r / c for r in range(c + 1)], [0.4 - 0.2 * r / c for r in range(c + 1)]]}
    return MicroladModel(vae, unet, DDPMSchedule(), grey_values=[0.0, 255.0], patch_size=16, training_stats=stats)


def test_s2_target_from_an_image_file_is_read_on_the_models_phases(tiny_model, tmp_path):
    import tifffile

    from microlad.guidance import prepare

    # a quarter of the file is grey value 255 (the model's phase 1), in a band of columns:
    # S2(0) is each phase's area fraction and, for phases in
    # a band, S2 falls with r for both phases
    img = np.zeros((20, 24), dtype=np.uint8)
    img[:, :6] = 255
    path = tmp_path / "band.tif"
    tifffile.imwrite(path, img)
    (t,), _ = prepare(tiny_model, [f"s2={path}"])
    assert t.curve.shape == (2, 9)  # the model's S2 cutoff (8 px) is kept
    assert t.curve[1, 0] == pytest.approx(0.25) and t.curve[0, 0] == pytest.approx(0.75)
    assert np.all(np.diff(t.curve, axis=1) <= 1e-12) and np.all(t.curve[:, 1:] < t.curve[:, :1])
    assert t.describe() == f"s2={path}"
    (one,), _ = prepare(tiny_model, {"s2:1": str(path)})
    assert one.curve.shape == (9,) and np.allclose(one.curve, t.curve[1])
    small = tmp_path / "small.npy"
    np.save(small, img[:6, :10])
    assert prepare(tiny_model, [f"s2={small}"])[0][0].curve.shape == (2, 4)  # capped at half the short side


@pytest.mark.parametrize("content, fragment", [(None, "no such file"), (7, "grey value 7")])
def test_bad_s2_image_targets_are_one_line_input_errors(tiny_model, tmp_path, content, fragment):
    from microlad.guidance import prepare

    path = tmp_path / "target.npy"
    if content is not None:
        np.save(path, np.full((16, 16), content, dtype=np.uint8))
    with pytest.raises(InputError) as exc:
        prepare(tiny_model, [f"s2={path}"])
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_same_seed_same_volume_and_different_seed_different(tiny_model, one_torch_thread):
    kw = dict(steps=6, lmpdd_steps=3, progress=False)
    a = generate(tiny_model, (8, 8, 8), {"vf:1": 0.5}, seed=3, **kw)[0]
    b = generate(tiny_model, (8, 8, 8), {"vf:1": 0.5}, seed=3, **kw)[0]
    c = generate(tiny_model, (8, 8, 8), {"vf:1": 0.5}, seed=4, **kw)[0]
    assert np.array_equal(a.labels, b.labels) and a.log == b.log
    assert not np.array_equal(a.labels, c.labels)


@pytest.fixture(scope="module")
def sofc_model():
    """The bundled SOFC-anode model (trained; ships with the package), used on 16³ volumes."""
    from microlad.bundled import resolve_model
    from microlad.model import load_model

    return load_model(resolve_model("sofc-anode"))


def test_guided_vf_moves_toward_its_target_and_logs_every_term(sofc_model, one_torch_thread):
    # a random-weight VAE barely responds to its latents, so this uses the trained bundled model on a 16³ volume
    res = generate(sofc_model, (16, 16, 16), ["vf:1=0.40", "sa:0=0.10"], steps=30, lmpdd_steps=5, seed=0, progress=False,
                   weights={"sa": 0.5})[0]
    vf = next(t for t in res.terms if t.name == "vf:1")
    # measured on the final labels with the report's VF
    assert vf.achieved == pytest.approx(float((res.labels == 1).mean()))
    assert abs(vf.achieved - 0.40) < abs(vf.start - 0.40) - 0.05, vf
    assert len(res.log) == res.steps_run and 30 <= res.steps_run <= 60  # extended while sa:0 missed
    for row in res.log:
        for name in ("vf:1", "sa:0"):
            assert math.isfinite(row[f"{name}:value"]) and math.isfinite(row[f"{name}:grad_norm"])
            w = 1.0 if name == "vf:1" else 0.5
            bound = w * gain(row[f"{name}:residual"]) * row["prior_grad_norm"]
            assert row[f"{name}:balanced_norm"] == pytest.approx(bound, rel=1e-4, abs=1e-9)


def test_match_vf_with_a_vf_target_is_refused(tiny_model):
    with pytest.raises(InputError, match="undo"):
        generate(tiny_model, (8, 8, 8), {"vf:1": 0.5}, match_vf=True, progress=False)


def test_model_generate_method_forwards(tiny_model, one_torch_thread):
    a = tiny_model.generate((8, 8, 8), {"vf:1": 0.5}, seed=2, steps=3, lmpdd_steps=2, progress=False)[0]
    b = generate(tiny_model, (8, 8, 8), {"vf:1": 0.5}, seed=2, steps=3, lmpdd_steps=2, progress=False)[0]
    assert np.array_equal(a.labels, b.labels)


def test_finish_smoothing_width_is_calibrated_once_on_the_start_and_kept(sofc_model, one_torch_thread, monkeypatch):
    import microlad.reconstruct.smoothing as smoothing

    calls = []
    real = smoothing.calibrate_sigma

    def counting(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(smoothing, "calibrate_sigma", counting)
    # three calibrations (steps 0, 2, 4) and the final finish: four finishes, one calibration of σ
    res = generate(sofc_model, (16, 16, 16), ["vf:1=0.40"], steps=6, calibrate_every=2, lmpdd_steps=5, seed=0, progress=False)[0]
    assert len(calls) == 1
    assert res.smoothing_sigma[0] > 0.0 or calls[0] == 0.0  # the per-phase widths start from that common one
    off = generate(sofc_model, (16, 16, 16), ["vf:1=0.40"], steps=6, calibrate_every=2, lmpdd_steps=5, seed=0, progress=False,
                   smooth=False)[0]
    assert len(calls) == 1 and off.smoothing_sigma == (0.0, 0.0, 0.0)


def test_vf_targets_are_settled_exactly_and_what_sds_reached_is_reported(sofc_model, one_torch_thread):
    # one checkpoint (the last step, no extension): both runs return the same latent
    kw = dict(steps=8, max_steps=8, lmpdd_steps=5, seed=1, progress=False, calibrate_every=0)
    res = generate(sofc_model, (16, 16, 16), ["vf:1=0.40"], **kw)[0]
    vf = res.terms[0]
    assert vf.achieved == pytest.approx(float((res.labels == 1).mean()))
    assert abs(vf.achieved - 0.40) <= 2e-3  # the finish's threshold matching tolerance (one 16³ voxel is 2.4e-4)
    raw = generate(sofc_model, (16, 16, 16), ["vf:1=0.40"], exact_vf=False, **kw)[0]
    # without settling, the volume is what SDS left: the fraction reported before settling
    assert vf.extra["before_settle"] == pytest.approx(raw.terms[0].achieved)
    assert "before_settle" not in raw.terms[0].extra
    # settling moves only the closest calls: the untargeted phases keep their relative shares
    share = lambda lab: (lab == 0).sum() / max(1, ((lab == 0) | (lab == 2)).sum())
    assert share(res.labels) == pytest.approx(share(raw.labels), abs=0.03)


def test_a_surface_area_target_turns_the_finish_smoothing_off(sofc_model, one_torch_thread):
    res = generate(sofc_model, (16, 16, 16), ["sa:0=0.15"], steps=2, lmpdd_steps=3, seed=0, progress=False)[0]
    assert res.smoothing_sigma == (0.0, 0.0, 0.0) and res.config["smooth"] is False
    other = generate(sofc_model, (16, 16, 16), ["vf:0=0.4"], steps=2, lmpdd_steps=3, seed=0, progress=False)[0]
    assert other.config["smooth"] is True


def _checkpoints(log: list[dict], name: str) -> list[tuple[int, float]]:
    """(step count, value measured on the finished labels) of every checkpoint in a run's log."""
    out = [(row["step"], row[f"{name}:measured"]) for row in log if row["step"] > 0 and f"{name}:measured" in row]
    return out + [(row["step"] + 1, row[f"{name}:measured_after"]) for row in log if f"{name}:measured_after" in row]


def test_a_missed_target_extends_the_run_and_the_closest_measured_checkpoint_is_returned(sofc_model, one_torch_thread):
    target = 0.5  # far above what a 16³ SOFC volume reaches in a few steps: never met
    kw = dict(lmpdd_steps=5, seed=1, progress=False, calibrate_every=3, checkpoint_every=3)
    res = generate(sofc_model, (16, 16, 16), [f"sa:0={target}"], steps=6, max_steps=12, **kw)[0]
    assert res.steps_run == 12 and len(res.log) == 12
    cps = _checkpoints(res.log, "sa:0")
    assert [c[0] for c in cps] == [3, 6, 9, 12]
    best = min(cps, key=lambda c: (abs(c[1] / target - 1), -c[0]))
    assert res.selected_step == best[0]
    # the returned labels are that checkpoint's: the report measures the same value on them
    assert res.terms[0].achieved == pytest.approx(best[1], rel=1e-6)
    never = generate(sofc_model, (16, 16, 16), [f"sa:0={target}"], steps=6, max_steps=6, **kw)[0]
    assert never.steps_run == 6 and never.selected_step in (3, 6)


def test_settled_vf_targets_do_not_extend_the_run(sofc_model, one_torch_thread):
    res = generate(sofc_model, (16, 16, 16), ["vf:1=0.45"], steps=6, lmpdd_steps=5, seed=2, progress=False)[0]
    assert res.steps_run == 6 and res.terms[0].achieved == pytest.approx(0.45, abs=0.01)


def test_max_steps_below_steps_is_an_input_error(tiny_model):
    with pytest.raises(InputError, match="max_steps"):
        generate(tiny_model, (8, 8, 8), {"vf:1": 0.5}, steps=6, max_steps=5, progress=False)


def test_checkpoints_measure_other_targets_on_the_settled_volume_the_user_gets(sofc_model, one_torch_thread):
    # a VF target far from the start: settling moves many voxels, and with them the surface
    kw = dict(steps=2, max_steps=2, lmpdd_steps=5, seed=1, progress=False, calibrate_every=0)
    res = generate(sofc_model, (16, 16, 16), ["vf:1=0.55", "sa:1=0.2"], **kw)[0]
    vf, sa = res.terms
    last = res.log[-1]
    # the last checkpoint is the returned volume: its surface area was read after the settle,
    # its VF before (what guidance itself reached)
    assert last["sa:1:measured_after"] == pytest.approx(sa.achieved, rel=1e-9)
    assert last["vf:1:measured_after"] == pytest.approx(vf.extra["before_settle"], rel=1e-9)
    assert abs(vf.achieved - vf.extra["before_settle"]) > 0.01  # the settle did move the fraction
    # the start is reported as reconstructed, before any settling
    start = generate(sofc_model, (16, 16, 16), ["vf:1=0.55", "sa:1=0.2"], steps=1, max_steps=1, lmpdd_steps=5, seed=1,
                     progress=False, calibrate_every=0, exact_vf=False)[0]
    assert sa.start == pytest.approx(start.terms[1].start, rel=1e-9)
    assert sa.start != pytest.approx(res.log[0]["sa:1:measured"], rel=1e-3)


def _sa_run(model, **kw):
    return generate(model, (16, 16, 16), ["sa:0=0.5"], steps=6, max_steps=6, calibrate_every=3, lmpdd_steps=5, seed=1,
                    progress=False, **kw)[0]


def test_checkpoints_between_calibrations_are_measured_without_recalibrating(sofc_model, one_torch_thread, monkeypatch):
    from microlad.guidance import loop

    updates = []
    original = loop._Run.calibrate

    def spy(self, z, values, update=True):
        updates.append(update)
        return original(self, z, values, update)

    monkeypatch.setattr(loop._Run, "calibrate", spy)
    res = _sa_run(sofc_model, checkpoint_every=1)
    cps = _checkpoints(res.log, "sa:0")
    assert [c[0] for c in cps] == [1, 2, 3, 4, 5, 6]
    # offsets are set at the start, at the calibration (step 3) and after the last step only
    assert updates == [True, False, False, True, False, False, True]
    best = min(cps, key=lambda c: (abs(c[1] / 0.5 - 1), -c[0]))
    assert res.selected_step == best[0]
    assert res.terms[0].achieved == pytest.approx(best[1], rel=1e-6)


def test_the_checkpoint_choice_loses_the_fewest_spannings_of_the_start_and_the_last_step(sofc_model, one_torch_thread, monkeypatch):
    from microlad.guidance import loop

    free = _sa_run(sofc_model, checkpoint_every=1)
    ranked = sorted(_checkpoints(free.log, "sa:0"), key=lambda c: (abs(c[1] / 0.5 - 1), -c[0]))
    full = frozenset((p, a) for p in range(3) for a in range(3))
    last = 6  # calibrate's order: the start (0), then steps 1..6; 6 is the last step

    def run_with(spans_at):
        calls = iter(range(7))

        def fake_spans(self, labels):
            return spans_at.get(next(calls), full)

        monkeypatch.setattr(loop._Run, "spans", fake_spans)
        return _sa_run(sofc_model, checkpoint_every=1)

    lost = full - {(1, 2)}
    # the closest checkpoint lost a spanning the start and the last step have: the next closest is returned
    res = run_with({ranked[0][0]: lost})
    assert res.selected_step == ranked[1][0]
    k = ranked[0][0]  # the log shows what was lost
    column = res.log[k]["spanning:measured"] if k < 6 else res.log[5]["spanning:measured_after"]
    assert column == "0:zyx 1:zy 2:zyx"
    # a spanning only the start had counts too: every checkpoint lost it, so closeness decides
    assert run_with({k: lost for k in range(1, 7)}).selected_step == ranked[0][0]
    # one gained by the last step (not at the start) is kept: only the last step has it
    assert run_with({k: lost for k in range(6)}).selected_step == last
    # one seen only at a checkpoint in between (a transient) is not protected: closeness decides
    transient = next(c[0] for c in ranked[1:] if c[0] != last)
    assert run_with({k: lost for k in range(7)} | {transient: full}).selected_step == ranked[0][0]
    # fewer losses beat closeness: the start spans (0, z); of the checkpoints only the second closest keeps it
    two = lost - {(0, 0)}
    res = run_with({0: lost} | {k: two for k in range(1, 7)} | {ranked[1][0]: lost})
    assert res.selected_step == ranked[1][0]


def test_phases_named_by_a_scalar_target_are_not_guarded(sofc_model):
    from microlad.guidance import loop

    tg, wt = loop.prepare(sofc_model, ["sa:0=0.1", "s2=train"])
    run = loop._Run(sofc_model, (16, 16, 16), loop._states(sofc_model, tg, wt), wt["prior"], 0, loop.GuidanceOptions(),
                    None, torch.device("cpu"))
    assert run.guarded == (1, 2)


def test_extra_checkpoints_by_default_only_where_they_are_cheap_and_scored():
    from microlad.guidance.loop import _default_checkpoint_every as every

    t = lambda *specs: parse_targets(list(specs))  # noqa: E731
    assert every(t("s2=train"), 60, 20, True) == 5
    assert every(t("sa:0=0.1", "vf:1=0.4"), 60, 20, True) == 5
    assert every(t("vf:1=0.4"), 60, 20, True) == 20  # settled exactly: nothing to choose
    assert every(t("vf:1=0.4"), 60, 20, False) == 5
    assert every(t("s2=train", "deff:0@x=0.1"), 60, 20, True) == 20  # a 3D solve per checkpoint
    assert every(t("s2=train"), 60, 0, True) == 0


def test_negative_checkpoint_every_is_an_input_error(tiny_model):
    with pytest.raises(InputError, match="checkpoint_every"):
        generate(tiny_model, (8, 8, 8), {"vf:1": 0.5}, steps=6, checkpoint_every=-1, progress=False)


def test_an_s2_guided_run_ends_with_the_label_polish_and_reports_both_errors(sofc_model, one_torch_thread):
    from microlad.guidance.terms import s2_report

    kw = dict(steps=3, lmpdd_steps=3, seed=0, progress=False)
    res = generate(sofc_model, (32, 32, 32), ["s2=train"], **kw)[0]
    plain = generate(sofc_model, (32, 32, 32), ["s2=train"], polish=0, **kw)[0]
    (s2,), (s2_plain,) = res.terms, plain.terms
    assert not res.polish["reverted"]
    assert plain.polish == {} and "before_polish" not in s2_plain.extra
    assert res.polish["iterations"] >= 1 and res.polish["flipped"] == int((res.labels != plain.labels).sum()) > 0
    assert s2.extra["before_polish"] == pytest.approx(s2_plain.achieved)  # the same run up to the polish
    curve = sofc_model.training_stats.s2_radial_mean
    assert s2.achieved == pytest.approx(s2_report(res.labels, np.asarray(curve), (0, 1, 2))["max_error"])
    assert s2.achieved < s2_plain.achieved
    assert res.config["polish"] > 0


def test_the_polish_does_not_run_with_a_target_it_does_not_see(sofc_model, one_torch_thread):
    res = generate(sofc_model, (16, 16, 16), ["s2=train", "sa:0=0.15"], steps=2, lmpdd_steps=3, seed=0, progress=False)[0]
    assert res.polish == {}


def test_a_polish_that_would_lose_a_spanning_returns_the_last_state_that_kept_them(sofc_model, one_torch_thread, monkeypatch):
    import microlad.guidance.loop as loop

    real = loop.polish_s2

    def cutting(labels, curves, phases, **kw):  # a "polish" that breaks every phase-0 path along z
        out = labels.copy()
        out[8][out[8] == 0] = 1
        assert not kw["keep"](out) and kw["keep"](labels)
        return real(labels, curves, phases, **kw)

    monkeypatch.setattr(loop, "polish_s2", cutting)
    res = generate(sofc_model, (16, 16, 16), ["s2=train"], steps=2, lmpdd_steps=3, seed=0, progress=False)[0]
    plain = generate(sofc_model, (16, 16, 16), ["s2=train"], steps=2, lmpdd_steps=3, seed=0, progress=False, polish=0)[0]
    spans = lambda lab: {(p, a) for p in range(3) for a, ok in enumerate(percolating_axes(lab, phase=p)) if ok}  # noqa: E731
    assert spans(plain.labels) <= spans(res.labels)


def test_polish_keep_condition_reverts_to_the_last_state_that_met_it(one_torch_thread):
    from scipy import ndimage as ndi

    from microlad.reconstruct.polish import polish_s2

    rng = np.random.default_rng(0)
    start = (ndi.gaussian_filter(rng.standard_normal((16, 16, 16)), 2) > 0).astype(np.uint8)
    curves = np.stack([np.linspace(0.3, 0.1, 9), np.linspace(0.7, 0.5, 9)])  # far: the polish moves many voxels
    seen = []

    def keep(lab):
        seen.append(int((lab != start).sum()))
        return seen[-1] < 50

    out, st = polish_s2(start, curves, (0, 1), n_phases=2, max_iter=40, keep=keep, keep_every=2)
    assert st.reverted and int((out != start).sum()) < 50 and st.flipped == int((out != start).sum())
