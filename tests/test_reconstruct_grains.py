"""The grain-pack start of reconstruct (microlad.reconstruct.grains), checked against the
Boolean sphere model's closed forms and scipy, not against its own output."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from microlad import descriptors as nd
from microlad.errors import InputError
from microlad.reconstruct.grains import boolean_grains, grain_parameters


@pytest.mark.parametrize("porosity,perimeter", [(0.2, 0.07), (0.3, 0.05)])
def test_boolean_grains_have_the_models_porosity_and_surface(porosity, perimeter):
    params = grain_parameters(porosity, perimeter)
    # closed forms of the Boolean sphere model: phi = exp(-lambda 4/3 pi R^3), S_V = 3 phi (-ln phi) / R
    assert math.exp(-params.intensity * 4 / 3 * math.pi * params.radius**3) == pytest.approx(porosity)
    assert 3 * porosity * -math.log(porosity) / params.radius == pytest.approx(4 / math.pi * perimeter)
    pores = [(~boolean_grains((96, 96, 96), params, np.random.default_rng(s))).astype(np.uint8) for s in (0, 1)]
    phi = np.mean([p.mean() for p in pores])
    la = np.mean([nd.slice_perimeter_density(p, phase=1, axis=a) for p in pores for a in range(3)])
    sa = np.mean([nd.specific_surface_area(p, phase=1) for p in pores])
    assert phi == pytest.approx(porosity, abs=0.02)
    assert la == pytest.approx(perimeter, rel=0.06)  # the stereological S_V = 4/pi L_A, voxelised
    assert sa == pytest.approx(4 / math.pi * perimeter, rel=0.1)  # marching cubes reads voxelised spheres a few % high


def test_boolean_grains_pore_space_is_connected_at_sandstone_porosity():
    from scipy import ndimage as ndi

    pores = ~boolean_grains((64, 64, 64), grain_parameters(0.2, 0.08), np.random.default_rng(3))
    lab, n = ndi.label(pores)
    sizes = np.bincount(lab.ravel())[1:]
    assert sizes.max() / pores.sum() > 0.9  # one pore network holds (nearly) all the pore space


def test_grain_parameters_reject_impossible_statistics():
    for phi, la in [(0.0, 0.1), (1.0, 0.1), (0.2, 0.0), (0.2, -1.0)]:
        with pytest.raises(InputError):
            grain_parameters(phi, la)


def test_lmpdd_from_an_init_at_start_zero_returns_the_init_and_is_seeded():
    from microlad.bundled import resolve_model
    from microlad.model import load_model
    from microlad.reconstruct.lmpdd import sample_latent_volume

    model = load_model(resolve_model("carbonate"))
    init = torch.randn((4, 4, 4, 4), generator=torch.Generator().manual_seed(0))
    kw = dict(steps=6, progress=False)
    same = sample_latent_volume(model.unet, model.schedule, (4, 4, 4, 4), init=init, start=0.0, **kw)
    torch.testing.assert_close(same, init)
    a, b = (sample_latent_volume(model.unet, model.schedule, (4, 4, 4, 4), init=init, start=0.5,
                                 generator=torch.Generator().manual_seed(1), **kw) for _ in range(2))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, init)
    with pytest.raises(ValueError):
        sample_latent_volume(model.unet, model.schedule, (4, 4, 4, 8), init=init, start=0.5, **kw)


def test_reconstruct_from_grains_keeps_the_pore_network_and_checks_its_input(one_torch_thread):
    from microlad.bundled import resolve_model
    from microlad.descriptors import percolating_axes
    from microlad.model import load_model

    model = load_model(resolve_model("carbonate"))
    kw = dict(n=1, seed=5, steps=8, progress=False)
    rec = model.reconstruct((48, 48, 48), init="grains", init_start=0.3, grain_roughness=0.0, **kw)[0]  # smooth spheres
    pore = int(np.argmin(model.training_stats.volume_fraction))
    assert abs((rec.labels == pore).mean() - model.training_stats.volume_fraction[pore]) < 0.01  # fractions matched
    assert all(percolating_axes(rec.labels, phase=pore))  # the pack's connected pores survive
    with pytest.raises(InputError):
        model.reconstruct((32, 32, 32), init="spheres", **kw)
    with pytest.raises(InputError):
        model.reconstruct((32, 32, 32), init="grains", init_start=0.0, **kw)
    with pytest.raises(InputError):
        load_model(resolve_model("sofc-anode")).reconstruct((32, 32, 32), init="grains", **kw)


def test_rough_grains_keep_the_pore_fraction_and_roughen_the_sections():
    params = grain_parameters(0.2, 0.066)
    smooth = (~boolean_grains((64, 64, 64), params, np.random.default_rng(4))).astype(np.uint8)
    rough = (~boolean_grains((64, 64, 64), params, np.random.default_rng(4), roughness=3.0)).astype(np.uint8)
    assert rough.mean() == pytest.approx(0.2, abs=0.002)  # the threshold is re-set to the pore fraction
    per = [np.mean([nd.slice_perimeter_density(v, phase=1, axis=a) for a in range(3)]) for v in (smooth, rough)]
    assert per[1] > 1.3 * per[0]
    with pytest.raises(InputError):
        from microlad.bundled import resolve_model
        from microlad.model import load_model

        load_model(resolve_model("carbonate")).reconstruct((16, 16, 16), init="grains", grain_roughness=-1.0, steps=2, progress=False)


def test_calibrate_roughness_finds_the_first_crossing_of_zero():
    from microlad.reconstruct.grains import calibrate_roughness

    calls = []

    def error(a):
        calls.append(a)
        return 0.1 * a - 0.25  # crosses 0 at A = 2.5

    a, trials = calibrate_roughness(error, grid=(0, 1, 2, 3, 4))
    assert a == pytest.approx(2.5) and calls == [0, 1, 2, 3]  # stops at the first amplitude that reaches 0
    assert [t[0] for t in trials] == calls
    assert calibrate_roughness(lambda a: 0.05, grid=(0, 1))[0] == 0  # already rough enough: smooth grains
    assert calibrate_roughness(lambda a: -1.0, grid=(0, 1, 6))[0] == 6  # never reached: the roughest tried
    with pytest.raises(InputError):
        calibrate_roughness(error, grid=(-1, 0))


def test_calibration_cubes_follow_the_requested_size():
    from microlad.reconstruct.grains import CALIBRATION_SIDE, calibration_cubes

    assert calibration_cubes((64, 64, 64), 4) == (64, 4)
    assert calibration_cubes((256, 256, 32), 4) == (32, 4)  # the smallest side, at most 4 cubes
    assert calibration_cubes((256, 256, 256), 4) == (CALIBRATION_SIDE, 2)
    assert calibration_cubes((100, 100, 100), 4) == (100, 4)
    assert calibration_cubes((6, 6, 6), 4) == (4, 4)


def test_auto_roughness_is_the_crossing_of_trial_reconstructions_slice_perimeter(one_torch_thread):
    """"auto" equals passing the calibrated A, and that A lies where unsmoothed trial cubes (seeds
    0, 1, ..., as many as calibration_cubes says) go from smoother to rougher than the training slices."""
    from microlad.bundled import resolve_model
    from microlad.model import load_model
    from microlad.reconstruct.grains import ROUGHNESS_GRID, calibration_cubes

    model = load_model(resolve_model("carbonate"))
    kw = dict(n=1, steps=4, progress=False, init="grains", init_start=0.5)
    auto = model.reconstruct((32, 32, 32), seed=9, **kw)[0]
    a = auto.grain_roughness
    assert a is not None and ROUGHNESS_GRID[0] <= a <= ROUGHNESS_GRID[-1]
    assert "grain_calibration" in auto.timings
    fixed = model.reconstruct((32, 32, 32), seed=9, grain_roughness=a, **kw)[0]
    np.testing.assert_array_equal(auto.labels, fixed.labels)
    pore = int(np.argmin(model.training_stats.volume_fraction))
    target = float(model.training_stats.specific_surface_area[pore])

    def error(amplitude):
        labs = [r.labels for r in model.reconstruct((32, 32, 32), seed=0, grain_roughness=amplitude, smooth=False,
                                                    **(kw | {"n": calibration_cubes((32, 32, 32), 4)[1]}))]
        return np.mean([nd.slice_perimeter_density(lab, phase=pore, axis=ax) for lab in labs for ax in range(3)]) / target - 1

    below = [g for g in ROUGHNESS_GRID if g < a - 1e-9]
    above = min(g for g in ROUGHNESS_GRID if g >= a - 1e-9) if a < ROUGHNESS_GRID[-1] else None
    if below:
        assert error(below[-1]) < 0  # the amplitude before the crossing leaves the slices too smooth
    if above is not None:
        assert error(above) >= 0


def test_return_latent_is_the_latent_the_volume_was_decoded_from(one_torch_thread):
    """Decoding the returned latent with reconstruct's own stages gives back its labels."""
    from microlad.bundled import resolve_model
    from microlad.model import load_model
    from microlad.reconstruct import latents_to_probabilities, refine_probabilities, smooth_probabilities, training_fractions

    model = load_model(resolve_model("carbonate"))
    rec = model.reconstruct((32, 32, 32), seed=3, steps=4, progress=False, init="grains", grain_roughness=1.0, return_latent=True)[0]
    assert rec.latent is not None and tuple(rec.latent.shape) == (model.vae.config.latent_channels, 8, 8, 8)
    vf = torch.tensor(training_fractions(model))
    vf = vf / vf.sum()
    probs = refine_probabilities(model.vae, latents_to_probabilities(model.vae, rec.latent, vf), 1, vf)
    probs, _ = smooth_probabilities(model, probs, vf)
    np.testing.assert_array_equal(probs.argmax(0).numpy().astype(np.uint8), rec.labels)
    assert model.reconstruct((32, 32, 32), seed=3, steps=4, progress=False)[0].latent is None  # not kept unless asked


def test_guidance_from_the_grain_start_starts_where_reconstruct_does(one_torch_thread):
    from microlad.bundled import resolve_model
    from microlad.guidance import generate
    from microlad.model import load_model

    model = load_model(resolve_model("carbonate"))
    pore = int(np.argmin(model.training_stats.volume_fraction))
    kw = dict(steps=2, lmpdd_steps=4, polish=0, progress=False)
    runs = generate(model, (32, 32, 32), {f"vf:{pore}": 0.2}, n=2, seed=4, init="grains", **kw)
    rec = model.reconstruct((32, 32, 32), seed=4, steps=4, progress=False, init="grains")[0]
    # one calibration (the reconstruct one for the same settings), the same roughness for both volumes
    assert runs[0].config["init"] == "grains"
    assert runs[0].config["grain_roughness"] == runs[1].config["grain_roughness"] == pytest.approx(rec.grain_roughness, abs=1e-4)
    plain = generate(model, (32, 32, 32), {f"vf:{pore}": 0.2}, n=1, seed=4, **kw)[0]
    assert plain.config["init"] is None and "grain_roughness" not in plain.config
    # the grain start's pore fraction before guidance differs from the noise start's (another latent)
    assert runs[0].phase_fractions["start"] != plain.phase_fractions["start"]
    with pytest.raises(InputError):
        generate(load_model(resolve_model("sofc-anode")), (16, 16, 16), {"vf:1": 0.3}, init="grains", **kw)
    with pytest.raises(InputError):
        generate(model, (16, 16, 16), {"vf:1": 0.3}, init="grains", grain_roughness="rough", **kw)
