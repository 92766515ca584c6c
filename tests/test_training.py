"""microlad.training with tiny models: losses, determinism, checkpoints, resume, errors."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from microlad.errors import CheckpointError, InputError, OutputExistsError
from microlad.models import UNetConfig, VAEConfig
from microlad.synthetic import random_field_labels
from microlad.training import TrainOptions, lr_at, train
from microlad.training import _loop
from microlad.training._checkpoint import flatten_optimizer, unflatten_optimizer

TINY_VAE = dict(latent_channels=2, base_channels=8, channel_multipliers=(1, 2), downsample_factor=2, norm_groups=4)
TINY_UNET = dict(in_channels=2, base_channels=8, channel_multipliers=(1, 2), attention=False, norm_groups=4)
# calibrate_prior off: its test is test_model_directory_stats_and_no_pickle (≈ 3 s per run)
TINY_OPTS = dict(latent_bank=128, stats_patches=32, heldout_patches=16, log_every=10, warmup_steps=5, vae_rounds=1,
                 calibrate_prior=False)


def tiny(**kw):
    """Keyword arguments of a tiny, fast training run (patch 16, 2 phases)."""
    args = dict(
        patch=16, vae_steps=20, ldm_steps=20, batch=4, progress=False, checkpoint_every=10,
        vae_config=VAEConfig(n_phases=2, **TINY_VAE), unet_config=UNetConfig(**TINY_UNET),
        options=TrainOptions(**TINY_OPTS),
    )
    args.update(kw)
    return args


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return random_field_labels((48, 48), fractions=(0.4, 0.6), correlation_length=2.0, seed=3)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return {**{f"vae/{k}": v for k, v in load_file(out / "vae.safetensors").items()},
            **{f"unet/{k}": v for k, v in load_file(out / "unet_ema.safetensors").items()}}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _losses(text: str, stage: str) -> list[float]:
    return [float(m) for m in re.findall(rf"^{stage} step \d+/\d+ +loss ([0-9.e+-]+)", text, flags=re.M)]


def test_losses_decrease_on_two_phase_pattern(tmp_path, caplog):
    img = random_field_labels((64, 64), fractions=(0.5, 0.5), correlation_length=3.0, seed=0)
    opts = TrainOptions(**{**TINY_OPTS, "vae_lr": 3e-3, "ldm_lr": 2e-3})
    with caplog.at_level(logging.INFO, logger="microlad.training"):
        model = train(img, tmp_path / "m", **tiny(vae_steps=100, ldm_steps=60, batch=8, options=opts))
    text = "\n".join(r.getMessage() for r in caplog.records)
    vae, ldm = _losses(text, "vae"), _losses(text, "ldm")
    assert len(vae) == 10 and len(ldm) == 6
    assert vae[-1] < 0.6 * vae[0]
    assert ldm[-1] < ldm[0]
    rep = model.training_stats.report
    assert rep.vae_reconstruction.pixel_accuracy > 0.8
    assert rep.steps == {"vae": 100, "ldm": 60}


def test_same_seed_same_weights_different_seed_differs(tmp_path, image):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train(image, tmp_path / name, seed=seed, **tiny())
    a, b, c = (_weights(tmp_path / n) for n in "abc")
    assert _same(a, b)
    assert not _same(a, c)


def test_model_directory_stats_and_no_pickle(tmp_path, image):
    out = tmp_path / "m"
    model = train([image, image[::-1].copy()], out, **tiny(options=TrainOptions(**{**TINY_OPTS, "calibrate_prior": True})))
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "vae.safetensors", "unet_ema.safetensors", "train_state.safetensors", "train_state.json"} <= names
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".pickle")]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    state = json.loads((out / "train_state.json").read_text())
    assert state["format"] == "microlad-train-state" and state["stage"] == "done"
    assert (state["vae_step"], state["ldm_step"]) == (20, 20)
    st = model.training_stats
    assert len(st.volume_fraction) == 2 and abs(sum(st.volume_fraction) - 1) < 1e-9
    # the whole inputs' pixel-weighted fractions (what --match-vf targets), counted independently
    np.testing.assert_allclose(st.image_volume_fraction, np.bincount(image.ravel(), minlength=2) / image.size)
    assert np.array(st.s2_radial_mean).shape == (2, 9) and np.array(st.s2_radial_std).shape == (2, 9)
    assert np.allclose(np.array(st.s2_radial_mean)[:, 0], st.volume_fraction)  # S2(0) = VF
    assert len(st.specific_surface_area) == 2 and min(st.specific_surface_area) > 0
    rep = st.report
    assert len(rep.vae_reconstruction.accuracy) == 2 and len(rep.vae_reconstruction.s2_error) == 2
    assert set(rep.final_losses) == {"vae", "ldm"} and {"vae", "stats", "ldm", "total"} <= set(rep.time_s)
    scale = model.vae.latent_scale
    assert torch.all(scale > 0) and not torch.all(scale == 1)  # measured latent statistics stored
    from microlad.model import load_model

    loaded = load_model(out)
    assert torch.equal(loaded.vae.latent_shift, model.vae.latent_shift)
    # the 2D prior's sampler was calibrated at the end of training, stored, and is sample_2d's default
    from microlad.reconstruct.calibration import PRIOR_SAMPLER_CANDIDATES

    assert loaded.prior_sampler in PRIOR_SAMPLER_CANDIDATES
    scores = loaded.config.prior_sampler["calibration"]["scores"]
    assert scores[f"{loaded.prior_sampler[0]}:{loaded.prior_sampler[1]}"] == min(scores.values())
    # the 2D prior's clean-estimate moments for L-MPDD's default sampler are stored, and equal
    # to computing them afresh (what reconstruct would otherwise do at every load)
    from microlad.defaults import RECONSTRUCT_STEPS
    from microlad.reconstruct.moments import prior_moments

    lm = loaded.config.latent_moments
    assert (lm["sampler"], lm["steps"]) == ("ddim", RECONSTRUCT_STEPS)
    fresh = prior_moments(loaded.unet, loaded.schedule, loaded.latent_channels, lm["latent_size"], steps=RECONSTRUCT_STEPS)
    np.testing.assert_array_equal(np.array(lm["mean"], dtype=np.float32), fresh[0].numpy())
    np.testing.assert_array_equal(np.array(lm["std"], dtype=np.float32), fresh[1].numpy())


def _crash_at_step(monkeypatch, n: int, run) -> None:
    """Run ``run()`` with a simulated crash at the ``n``-th optimizer step (both stages counted)."""
    real = _loop.lr_at
    calls = {"n": 0}

    def failing(step, total, peak, opts):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("simulated crash")
        return real(step, total, peak, opts)

    monkeypatch.setattr(_loop, "lr_at", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        run()
    monkeypatch.setattr(_loop, "lr_at", real)


def test_resume_after_interruption_matches_uninterrupted(tmp_path, image, monkeypatch):
    train(image, tmp_path / "ref", **tiny(vae_steps=20, ldm_steps=30))
    # crash during stage 2, after its first checkpoint
    _crash_at_step(monkeypatch, 20 + 15, lambda: train(image, tmp_path / "run", **tiny(vae_steps=20, ldm_steps=30)))
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert (state["stage"], state["ldm_step"]) == ("ldm", 10)
    model = train(image, tmp_path / "run", resume=True, **tiny(vae_steps=None, ldm_steps=None))
    assert model.training_stats.report.steps == {"vae": 20, "ldm": 30}
    assert _same(_weights(tmp_path / "ref"), _weights(tmp_path / "run"))


def test_resume_of_finished_run_and_conflicting_arguments(tmp_path, image):
    out = tmp_path / "m"
    first = train(image, out, **tiny())
    again = train(image, out, resume=True, **tiny())
    assert torch.equal(again.vae.latent_scale, first.vae.latent_scale)
    with pytest.raises(InputError, match="--vae-steps 99 differs"):
        train(image, out, resume=True, **tiny(vae_steps=99))
    with pytest.raises(InputError, match="images differ"):
        train(1 - image, out, resume=True, **tiny())


def test_refuses_non_empty_out_dir_unless_overwrite(tmp_path, image):
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        train(image, out, **tiny())
    with pytest.raises(CheckpointError, match="no training checkpoint"):
        train(image, out, resume=True, **tiny())
    train(image, out, overwrite=True, **tiny())
    assert (out / "notes.txt").read_text() == "mine" and (out / "vae.safetensors").exists()


@pytest.mark.parametrize("damage", ["truncate", "foreign", "json"])
def test_damaged_checkpoint_is_one_line_checkpoint_error(tmp_path, image, damage):
    out = tmp_path / "m"
    train(image, out, **tiny(ldm_steps=0))
    st = out / "train_state.safetensors"
    if damage == "truncate":
        data = st.read_bytes()
        st.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":
        save_file({"w": torch.zeros(3)}, str(st))
    else:
        (out / "train_state.json").write_text('{"format": "microlad-train')
    with pytest.raises(CheckpointError) as exc:
        train(image, out, resume=True, **tiny(ldm_steps=0))
    assert "\n" not in str(exc.value) and str(st.parent) in str(exc.value)


def test_lr_schedule_and_optimizer_state_round_trip():
    opts = TrainOptions(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 100, 1.0, opts) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, opts) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0, opts) == pytest.approx(0.1, abs=1e-3)
    assert lr_at(50, 100, 1.0, TrainOptions(lr_schedule="constant", warmup_steps=10)) == 1.0
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.ones(4, 3)).sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer("opt", opt)
    json.dumps(meta)  # structure is JSON-able
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(unflatten_optimizer("opt", tensors, json.loads(json.dumps(meta))))
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(s1["state"][i][k], s2["state"][i][k])


def test_bad_arguments(tmp_path, image):
    with pytest.raises(InputError, match="multiple of"):
        train(image, tmp_path / "a", **tiny(patch=14))
    with pytest.raises(InputError, match="smaller than the patch"):
        train(image, tmp_path / "b", **tiny(patch=64))
    with pytest.raises(InputError, match="n_phases"):
        train(image, tmp_path / "c", **tiny(vae_config=VAEConfig(n_phases=3, **TINY_VAE)))
    assert not (tmp_path / "a").exists()


def _tiny_settings(**requested):
    from microlad.training._settings import RunSettings

    base = dict(patch=16, vae_steps=4, ldm_steps=4, batch=2, seed=7, vae_config=VAEConfig(n_phases=2, **TINY_VAE),
                unet_config=UNetConfig(**TINY_UNET), options=TrainOptions(**TINY_OPTS))
    return RunSettings.merge({**base, **requested}, None, 2)


def test_run_settings_merge_with_a_checkpoint():
    from microlad.training._settings import RunSettings

    fresh = _tiny_settings()
    saved = json.loads(json.dumps(fresh.to_dict()))  # as stored in train_state.json
    # on resume, unset values come from the checkpoint, not from the defaults
    resumed = RunSettings.merge({"patch": None, "vae_steps": None, "vae_config": None}, saved, 2)
    assert resumed == fresh
    assert RunSettings.merge({}, None, 2).patch == 64 and RunSettings.merge({}, None, 2).seed == 0
    with pytest.raises(InputError, match="--ldm-steps 9 differs from the checkpoint's ldm_steps=4"):
        RunSettings.merge({"ldm_steps": 9}, saved, 2)
    with pytest.raises(InputError, match="augment=False differs"):
        RunSettings.merge({"augment": False}, saved, 2)
    with pytest.raises(InputError, match="unet_config differs"):
        RunSettings.merge({"unet_config": UNetConfig(**{**TINY_UNET, "base_channels": 16})}, saved, 2)
    with pytest.raises(InputError, match="n_phases=2 but the images have 3 phases"):
        RunSettings.merge({}, saved, 3)


def test_train_state_checkpoint_restores_what_it_saved():
    from microlad.training._distributed import DistContext
    from microlad.training._state import MODULES, OPTIMIZERS, TrainState

    settings, ctx = _tiny_settings(), DistContext()
    a = TrainState(settings, ctx)
    for net, opt in ((a.vae, a.opt_vae), (a.unet, a.opt_unet)):  # give every part a non-initial state
        params = [p for p in net.parameters() if p.requires_grad]
        sum(p.sum() for p in params).backward()
        opt.step()
    a.ema.load_state_dict(a.unet.state_dict())
    torch.randn(3, generator=a.data_gen), a.np_rng.random()
    for stage in ("vae", "ldm"):
        a.stage, a.steps = stage, {"vae": 4, "ldm": 2 if stage == "ldm" else 0}
        tensors, doc = a.checkpoint()
        names = {k.split("/")[0] for k in tensors}
        assert names == {*MODULES[stage], *OPTIMIZERS[stage], "rng"}
        b = TrainState(settings, ctx)
        b.restore(tensors, json.loads(json.dumps(doc)))
        assert (b.stage, b.steps) == (stage, a.steps)
        for name in MODULES[stage]:
            assert _same(getattr(a, name).state_dict(), getattr(b, name).state_dict())
        for name in OPTIMIZERS[stage]:
            sa, sb = getattr(a, name).state_dict()["state"], getattr(b, name).state_dict()["state"]
            assert sa.keys() == sb.keys() and all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i] if torch.is_tensor(sa[i][k]))
        for gen in ("data_gen", "noise_gen"):
            assert torch.equal(getattr(a, gen).get_state(), getattr(b, gen).get_state())
        assert a.np_rng.bit_generator.state == b.np_rng.bit_generator.state


# -- VAE rounds: train the VAE longer only while its round trip loses slice perimeter ----------
def test_another_vae_round_rule():
    from microlad.training._stats import another_vae_round

    r = lambda *w: [{"worst": x} for x in w]  # noqa: E731
    assert another_vae_round(r(0.10), max_rounds=4, tol=0.03)  # lossy: another round
    assert not another_vae_round(r(0.02), max_rounds=4, tol=0.03)  # within tolerance: stop
    assert another_vae_round(r(0.10, 0.06), max_rounds=4, tol=0.03)  # still lossy and improving
    assert not another_vae_round(r(0.10, 0.11), max_rounds=4, tol=0.03)  # no gain: stop
    assert not another_vae_round(r(0.10, 0.06, 0.04, 0.035), max_rounds=4, tol=0.03)  # cap reached
    assert not another_vae_round(r(0.10), max_rounds=1, tol=0.03)
    assert not another_vae_round(r(None), max_rounds=4, tol=0.03)  # no boundary to measure
    assert not another_vae_round([], max_rounds=4, tol=0.03)


def test_heldout_report_perimeter_error_is_signed_relative_perimeter():
    from skimage.measure import perimeter

    from microlad.training._stats import reconstruction_report

    true = np.zeros((3, 32, 32), np.uint8)
    true[:, 8:24, 8:24] = 1
    recon = true.copy()
    recon[:, 8:24, 8:16] = 0  # half the square: the phase-1 boundary shrinks from 4·16 to 2·16 + 2·8
    rep = reconstruction_report(true, recon, 2)
    ref = perimeter(recon[0] == 1) / perimeter(true[0] == 1) - 1.0  # scikit-image's perimeter estimate
    assert rep["perimeter_error"][1] == pytest.approx(ref, abs=0.03)
    assert rep["perimeter_error"][1] == pytest.approx(-0.25, abs=0.03)
    assert rep["perimeter_error"][0] == pytest.approx(rep["perimeter_error"][1], abs=1e-9)  # one interface


def test_vae_rounds_follow_the_heldout_perimeter(tmp_path, image, monkeypatch):
    calls = []
    measure = _loop.heldout_reconstruction
    monkeypatch.setattr(_loop, "heldout_reconstruction", lambda *a, **k: calls.append(1) or measure(*a, **k))
    one = train(image, tmp_path / "one", **tiny(options=TrainOptions(**{**TINY_OPTS, "vae_rounds": 3, "vae_perimeter_tol": 10.0})))
    rep = one.training_stats.report
    assert rep.steps["vae"] == 20 and len(rep.vae_rounds) == 1 and not rep.vae_rounds[0]["extend"]
    # the round check's held-out report is reused as the training report's: measured once
    assert len(calls) == 1 and rep.vae_reconstruction.perimeter_error == tuple(rep.vae_rounds[0]["perimeter_error"])
    # a run that stops after one round has exactly the weights of a fixed-length run
    train(image, tmp_path / "fixed", **tiny())
    assert _same(_weights(tmp_path / "one"), _weights(tmp_path / "fixed"))

    from microlad.training._stats import another_vae_round

    opts = TrainOptions(**{**TINY_OPTS, "vae_rounds": 3, "vae_perimeter_tol": 0.0})
    many = train(image, tmp_path / "many", **tiny(options=opts))
    rounds = many.training_stats.report.vae_rounds
    assert len(rounds) >= 2, rounds  # a 20-step VAE loses perimeter; a second round helps it
    assert many.training_stats.report.steps["vae"] == 20 * len(rounds)
    assert [r["steps"] for r in rounds] == [20 * (i + 1) for i in range(len(rounds))]
    for i, rec in enumerate(rounds):  # each recorded decision is the rule applied to the records so far
        assert rec["extend"] == another_vae_round(rounds[: i + 1], 3, 0.0)
        assert rec["worst"] == max(abs(e) for e in rec["perimeter_error"] if e is not None)
    # the first round is the one-round run's VAE: the same 20 steps and learning-rate cycle
    assert rounds[0]["perimeter_error"] == list(rep.vae_rounds[0]["perimeter_error"])
    # the last check is the final VAE's held-out report
    assert list(rounds[-1]["perimeter_error"]) == list(many.training_stats.report.vae_reconstruction.perimeter_error)


def test_resume_inside_a_later_vae_round_matches_uninterrupted(tmp_path, image, monkeypatch):
    opts = TrainOptions(**{**TINY_OPTS, "vae_rounds": 3, "vae_perimeter_tol": 0.0})
    ref = train(image, tmp_path / "ref", **tiny(options=opts))
    assert len(ref.training_stats.report.vae_rounds) >= 2
    # crash in the second VAE round, after its first checkpoint
    _crash_at_step(monkeypatch, 20 + 15, lambda: train(image, tmp_path / "run", **tiny(options=opts)))
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert (state["stage"], state["vae_step"], state["vae_total"], len(state["vae_rounds"])) == ("vae", 30, 40, 1)
    run = train(image, tmp_path / "run", resume=True, **tiny(options=None))
    assert run.training_stats.report.vae_rounds == ref.training_stats.report.vae_rounds
    assert _same(_weights(tmp_path / "ref"), _weights(tmp_path / "run"))


def test_checkpoint_from_before_vae_rounds_resumes_with_one_round():
    from microlad.training._settings import RunSettings

    saved = json.loads(json.dumps(_tiny_settings().to_dict()))
    del saved["options"]["vae_rounds"]  # as written before VAE rounds existed
    assert RunSettings.merge({}, saved, 2).options.vae_rounds == 1
    assert RunSettings.merge({}, None, 2).options.vae_rounds == TrainOptions().vae_rounds > 1
