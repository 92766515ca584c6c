"""The guidance surrogate against reconstruct's decoding, and the final measurement
against the ``microlad properties`` report."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from microlad import descriptors as nd
from microlad.descriptors import torch as td
from microlad.guidance import parse_targets
from microlad.guidance.surrogate import axis_volume, cell_slices, in_plane_axes
from microlad.guidance.terms import TermState, measure
from microlad.reconstruct import decode_volume, latents_to_probabilities, sample_latent_volume, to_slices


def test_axis_volumes_average_to_reconstructs_decoding(one_torch_thread):
    from microlad.models import CategoricalVAE, VAEConfig

    torch.manual_seed(0)
    vae = CategoricalVAE(VAEConfig(n_phases=3, base_channels=8, norm_groups=4)).eval()
    z = torch.randn(4, 2, 3, 4)
    raw = vae.denormalize(z.movedim(0, 1)).movedim(1, 0)
    with torch.no_grad():
        mean = sum(axis_volume(vae, z, a) for a in range(3)) / 3
    torch.testing.assert_close(mean, decode_volume(vae, raw), rtol=1e-4, atol=1e-5)
    # the cell planes are the decoded latent planes themselves, laid out as to_slices
    with torch.no_grad():
        planes = cell_slices(vae, z, 1)
        direct = torch.softmax(vae.decode(to_slices(raw, 1).contiguous()), dim=1)
    assert planes.shape == (3, 3, 16, 8)  # (h, P, W·f, D·f): slices normal to y are (X, Z)
    torch.testing.assert_close(planes, direct, rtol=1e-4, atol=1e-5)
    assert in_plane_axes(1) == (2, 0)


@pytest.fixture(scope="module")
def sofc_model():
    from microlad.bundled import resolve_model
    from microlad.model import load_model

    return load_model(resolve_model("sofc-anode"))


def test_surrogate_fractions_agree_with_reconstructs_labels_and_surface_area_is_proportional(sofc_model, one_torch_thread):
    m = sofc_model
    ratios = []
    for seed in range(3):
        z = sample_latent_volume(m.unet, m.schedule, (4, 8, 8, 8), generator=torch.Generator().manual_seed(seed), progress=False)
        labels = latents_to_probabilities(m.vae, z).argmax(0).numpy()  # reconstruct's decoding, before refinement
        with torch.no_grad():
            planes = [td.straight_through_onehot(cell_slices(m.vae, z, a), dim=1) for a in range(3)]
        for p in range(3):
            vf = np.mean([float(x[:, p].mean()) for x in planes])
            assert vf == pytest.approx(float((labels == p).mean()), abs=0.01)
            sa = np.mean([float(td.specific_surface_area(x[:, p], spatial_dims=2).mean()) for x in planes]) * 4 / math.pi
            ratios.append(sa / nd.specific_surface_area(labels, phase=p))
    # the stereological 2D estimate is offset from the report's marching cubes by a stable
    # factor (guidance calibrates it out on the finished labels)
    assert max(ratios) / min(ratios) < 1.15, ratios


def test_final_measurement_is_the_properties_report(one_torch_thread):
    from microlad.evaluate.properties import properties
    from microlad.synthetic import random_field_labels

    labels = random_field_labels((20, 20, 20), fractions=(0.5, 0.5), seed=3)
    rep = properties(labels, workers=1)
    for spec, key in (("vf:1=0.5", "volume_fraction"), ("sa:0=0.1", "specific_surface_area")):
        (t,) = parse_targets([spec])
        assert measure(TermState(t), labels) == pytest.approx(rep["phases"][str(t.phase)][key], rel=1e-9)
    for spec, key in (("deff:1@x=0.2", "effective_diffusivity"), ("tau:0@z=2", "tortuosity")):
        (t,) = parse_targets([spec])
        want = rep["phases"][str(t.phase)][key]["zyx"[t.axis]]
        assert measure(TermState(t), labels) == pytest.approx(want, rel=1e-6)


def test_checkpointed_axis_volume_has_the_same_values_and_gradient(monkeypatch, one_torch_thread):
    from microlad.guidance import surrogate
    from microlad.models import CategoricalVAE, VAEConfig

    torch.manual_seed(1)
    vae = CategoricalVAE(VAEConfig(n_phases=2, base_channels=8, norm_groups=4)).eval()
    z = torch.randn(4, 5, 2, 3)
    w = torch.randn(2, 20, 8, 12)
    grads = []
    for limit in (10**9, 0):  # plain, then checkpointed in batches of 16 slices
        monkeypatch.setattr(surrogate, "CHECKPOINT_VOXELS", limit)
        zr = z.clone().requires_grad_(True)
        out = axis_volume(vae, zr, 0)
        (out * w).sum().backward()
        grads.append((out.detach(), zr.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-6)


def test_s2_report_keeps_each_slicing_axis_apart_on_a_layered_volume():
    from microlad.guidance.terms import s2_report

    # layers normal to z: every z-normal plane is a single phase, so its S2 of phase 1 is
    # the layer fraction at every lag; y- and x-normal planes cut the layers into stripes
    z = np.arange(32)[:, None, None]
    labels = np.broadcast_to((z % 8 < 3).astype(np.uint8), (32, 32, 32)).copy()
    phi = 12 / 32
    ref = np.full((1, 9), phi)
    rep = s2_report(labels, ref, (1,))
    axis_curves = rep["axis_curves"]
    assert axis_curves.shape == (3, 1, 9)
    np.testing.assert_allclose(axis_curves[0, 0], phi, atol=1e-12)
    np.testing.assert_allclose(axis_curves[1], axis_curves[2], atol=1e-12)
    assert axis_curves[1, 0, 2] < 0.8 * phi


def test_s2_surrogate_target_uses_the_calibration_of_the_slicing_axis():
    from microlad.guidance.terms import loss_of, residual_of

    (t,) = parse_targets(["s2=train"])
    curve = torch.tensor([[0.5, 0.4, 0.3, 0.28], [0.5, 0.4, 0.3, 0.28]])
    term = TermState(t, curve=curve, phases=(0, 1))
    offset = torch.zeros(3, 2, 2, 4)  # (axis, in-cell plane offset, phase, lag)
    offset[1, 1] = 0.02  # y-normal planes at in-cell offset 1 read 0.02 above what the user gets
    term.offset = offset
    on_target = curve + offset[1, 1]
    assert float(loss_of(term, on_target, axis=1, plane=1)) == pytest.approx(0.0, abs=1e-12)
    assert residual_of(term, on_target, axis=1, plane=1) == pytest.approx(0.0, abs=1e-9)
    assert float(loss_of(term, on_target, axis=1, plane=0)) > 0
    assert float(loss_of(term, on_target, axis=0, plane=1)) > 0
    assert residual_of(term, curve, axis=0, plane=1) == pytest.approx(0.0, abs=1e-9)


def test_offset_planes_are_the_voxel_planes_of_reconstructs_one_axis_decoding(one_torch_thread):
    from microlad.models import CategoricalVAE, VAEConfig

    torch.manual_seed(2)
    vae = CategoricalVAE(VAEConfig(n_phases=3, base_channels=8, norm_groups=4)).eval()
    f = vae.config.downsample_factor
    z = torch.randn(4, 3, 4, 5)
    with torch.no_grad():
        for axis in range(3):
            full = axis_volume(vae, z, axis)  # (P, D, H, W): every voxel slice normal to axis
            for k in (0, f - 1):
                got = cell_slices(vae, z, axis, offset=k)  # (d, P, H', W')
                want = to_slices(full.index_select(
                    axis + 1, torch.arange(k, full.shape[axis + 1], f)), axis)
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="offset"):
            cell_slices(vae, z, 0, offset=f)
