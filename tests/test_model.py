"""Tests for microlad.model: model directory round trip, typed metadata, load errors, 2D sampling, devices."""
from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import microlad.model as model_module
from microlad._version import __version__
from microlad.diffusion import DDPMSchedule
from microlad.device import resolve_device
from microlad.errors import CheckpointError, InputError, OutputExistsError, ShapeError
from microlad.metadata import ModelConfig, TrainingReport, TrainingStats
from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig
from microlad.model import MicroladModel, load_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(seed: int = 0) -> MicroladModel:
    torch.manual_seed(seed)
    vae = CategoricalVAE(VAEConfig(n_phases=3, base_channels=8, norm_groups=4))
    unet = UNet2D(UNetConfig(in_channels=4, base_channels=16, channel_multipliers=(1, 2), norm_groups=4, attention_heads=2))
    for p in unet.parameters():  # leave the zero-initialised (constant) output
        torch.nn.init.normal_(p, std=0.05)
    vae.set_latent_stats(torch.tensor([0.1, -0.2, 0.0, 0.3]), torch.tensor([1.5, 0.5, 1.0, 2.0]))
    stats = {"volume_fraction": np.array([0.2, 0.3, 0.5]), "s2_radial_mean": np.linspace(0, 1, 5, dtype=np.float32)[None].repeat(3, 0),
             "n_patches": np.int64(7), "future_entry": {"a": [1, 2]}}
    return MicroladModel(vae, unet, DDPMSchedule(100), grey_values=(0, 128, 255), patch_size=16,
                         training_stats=stats, config={"note": "tiny"})


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[MicroladModel, Path]:
    model = tiny_model()
    path = tmp_path_factory.mktemp("model") / "m"
    model.save(path)
    return model, path


def fresh_copy(saved: tuple[MicroladModel, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    dst.mkdir()
    for f in saved[1].iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


# -- save / load ---------------------------------------------------------------------------
def test_save_writes_expected_files(saved) -> None:
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "unet_ema.safetensors", "vae.safetensors"]
    doc = json.loads((path / "config.json").read_text())
    assert doc["format"] == "microlad-model" and doc["format_version"] == 1
    assert doc["microlad_version"] == __version__ == doc["config"]["microlad_version"]
    assert doc["config"]["patch_size"] == 16 and doc["config"]["note"] == "tiny"
    assert doc["grey_values"] == [0, 128, 255]
    assert doc["training_stats"]["volume_fraction"] == [0.2, 0.3, 0.5] and doc["training_stats"]["n_patches"] == 7
    assert doc["training_stats"]["future_entry"] == {"a": [1, 2]}  # unknown entries are written back
    assert "image_volume_fraction" not in doc["training_stats"]  # unset entries are not written
    assert VAEConfig.from_dict(doc["vae"]) == model.vae.config
    assert UNetConfig.from_dict(doc["unet"]) == model.unet.config
    assert DDPMSchedule.from_dict(doc["schedule"]) == model.schedule


def test_roundtrip_is_bitwise(saved) -> None:
    model, path = saved
    loaded = load_model(path)
    for a, b in ((model.vae, loaded.vae), (model.unet, loaded.unet)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert loaded.grey_values == (0, 128, 255) and loaded.patch_size == 16
    assert isinstance(loaded.training_stats, TrainingStats) and loaded.training_stats == model.training_stats
    assert np.asarray(loaded.training_stats.s2_radial_mean).shape == (3, 5)
    assert loaded.training_stats.s2_radial_mean[1] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert loaded.config == model.config and loaded.config.extra == {"note": "tiny"}
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 16, 24), generator=g), 3).permute(0, 3, 1, 2).float()
    z, t = torch.randn(2, 4, 4, 8, generator=g), torch.tensor([3, 77])
    with torch.no_grad():
        assert torch.equal(model.vae.encode(x)[0], loaded.vae.encode(x)[0])
        assert torch.equal(model.vae.decode(z), loaded.vae.decode(z))
        assert torch.equal(model.unet(z, t), loaded.unet(z, t))
    assert np.array_equal(model.sample_2d(3, steps=4, seed=5), loaded.sample_2d(3, steps=4, seed=5))


def test_save_overwrite_and_no_leftovers(saved, tmp_path: Path) -> None:
    model, _ = saved
    path = model.save(tmp_path / "m")
    (path / "train_state.json").write_text("{}")  # training state beside the model is kept
    model.save(path)
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "train_state.json", "unet_ema.safetensors", "vae.safetensors"]
    with pytest.raises(OutputExistsError):
        model.save(path, overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError):
        model.save(tmp_path / "file")


def test_no_pickle_in_model_source() -> None:
    src = Path(model_module.__file__).read_text()
    assert "torch.load" not in src and "torch.save" not in src and "import pickle" not in src


def one_line_error(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found") as e:
        load_model(tmp_path / "nope")
    one_line_error(e)
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        load_model(tmp_path / "f")


def test_load_missing_config(saved, tmp_path: Path) -> None:
    path = fresh_copy(saved, tmp_path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json") as e:
        load_model(path)
    one_line_error(e)


@pytest.mark.parametrize("content,match", [
    ('{"hello": 1}', "not a microlad model config"),
    ("[1, 2]", "not a microlad model config"),
    ('{"format": "microlad-mod', "not valid JSON"),
    ('{"format": "microlad-model", "format_version": 99}', "newer"),
    ('{"format": "microlad-model", "format_version": 1}', "lacks the entry"),
])
def test_load_foreign_config(saved, tmp_path: Path, content: str, match: str) -> None:
    path = fresh_copy(saved, tmp_path)
    (path / "config.json").write_text(content)
    with pytest.raises(CheckpointError, match=match) as e:
        load_model(path)
    one_line_error(e)


def test_load_mismatched_architecture(saved, tmp_path: Path) -> None:
    path = fresh_copy(saved, tmp_path)
    doc = json.loads((path / "config.json").read_text())
    doc["unet"]["base_channels"] = 8
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="does not match") as e:
        load_model(path)
    one_line_error(e)


@pytest.mark.parametrize("name", ["vae.safetensors", "unet_ema.safetensors"])
@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_load_damaged_weights(saved, tmp_path: Path, name: str, damage: str) -> None:
    path = fresh_copy(saved, tmp_path)
    f = path / name
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "garbage":
        f.write_bytes(b"\x00" * 4 + b"not a safetensors file at all")
    else:
        f.unlink()
    with pytest.raises(CheckpointError, match=name) as e:
        load_model(path)
    one_line_error(e)


# -- sampling ------------------------------------------------------------------------------
def test_sample_2d_shapes_and_probabilities(saved) -> None:
    model, _ = saved
    labels = model.sample_2d(2, steps=3)
    assert labels.shape == (2, 16, 16) and labels.dtype == np.uint8 and labels.max() < 3
    labels, probs = model.sample_2d(3, size=(16, 32), steps=3, return_probabilities=True)
    assert labels.shape == (3, 16, 32) and probs.shape == (3, 3, 16, 32) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(axis=1), labels)
    assert model.sample_2d(1, size=8, steps=2, sampler="ancestral").shape == (1, 8, 8)
    with pytest.raises(ShapeError):
        model.sample_2d(1, size=12)
    with pytest.raises(InputError):
        model.sample_2d(1, sampler="euler")
    with pytest.raises(InputError):
        model.sample_2d(0)


def test_sampling_is_seeded(saved) -> None:
    model, _ = saved
    for sampler in ("ddim", "ancestral"):
        a = model.sample_latents(4, steps=5, seed=11, sampler=sampler)
        b = model.sample_latents(4, steps=5, seed=11, sampler=sampler)
        c = model.sample_latents(4, steps=5, seed=12, sampler=sampler)
        assert torch.equal(a, b) and not torch.equal(a, c)
    # deterministic DDIM does not depend on how the batch is split
    a = model.sample_latents(5, steps=4, seed=3, batch_size=5)
    b = model.sample_latents(5, steps=4, seed=3, batch_size=2)
    assert torch.allclose(a, b, atol=1e-5)
    assert np.array_equal(model.sample_2d(2, steps=4, seed=9), model.sample_2d(2, steps=4, seed=9))


def test_model_validation() -> None:
    m = tiny_model()
    with pytest.raises(InputError, match="grey_values"):
        MicroladModel(m.vae, m.unet, m.schedule, grey_values=(0, 1))
    with pytest.raises(ShapeError, match="patch_size"):
        MicroladModel(m.vae, m.unet, m.schedule, grey_values=(0, 1, 2), patch_size=12)
    other = UNet2D(UNetConfig(in_channels=2, base_channels=8, channel_multipliers=(1,), norm_groups=4, attention=False))
    with pytest.raises(InputError, match="in_channels"):
        MicroladModel(m.vae, other, m.schedule, grey_values=(0, 1, 2))
    assert m.size_multiple == 8 and m.latent_size((16, 32)) == (4, 8)


# -- devices and the reconstruct hook ---------------------------------------------------------
def test_resolve_device(monkeypatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(InputError):
        resolve_device("warp-drive")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")


def test_reconstruct_forwards_to_the_reconstruct_package(saved, monkeypatch) -> None:
    model, _ = saved
    fake = types.ModuleType("microlad.reconstruct")
    fake.reconstruct = lambda m, *a, **k: (m, a, k)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "microlad.reconstruct", fake)
    assert model.reconstruct((8, 8, 8), seed=1) == (model, ((8, 8, 8),), {"seed": 1})


# -- the typed metadata contract ---------------------------------------------------------------
def test_older_model_directory_loads_with_missing_entries_as_none(saved, tmp_path: Path) -> None:
    path = fresh_copy(saved, tmp_path)
    doc = json.loads((path / "config.json").read_text())
    doc["training_stats"] = {"volume_fraction": [0.2, 0.3, 0.5], "report": {"steps": {"vae": 3, "ldm": 4}}}
    del doc["config"]  # very old directories had no config block
    (path / "config.json").write_text(json.dumps(doc))
    loaded = load_model(path)
    st = loaded.training_stats
    assert st.image_volume_fraction is None and st.s2_radial_mean is None
    assert st.fractions() == (0.2, 0.3, 0.5)  # older models: the patch mean
    assert isinstance(st.report, TrainingReport) and st.report.steps == {"vae": 3, "ldm": 4}
    assert st.report.vae_reconstruction is None
    assert loaded.patch_size == 64 and loaded.config.training is None


def test_training_stats_contract() -> None:
    st = TrainingStats.from_dict({"volume_fraction": [0.5, 0.5], "image_volume_fraction": [0.4, 0.6],
                                  "report": {"vae_reconstruction": {"pixel_accuracy": 0.9, "accuracy": [0.8, None]}}})
    assert st.fractions() == (0.4, 0.6)  # the whole images' fractions win over the patch mean
    assert st.report.vae_reconstruction.accuracy == (0.8, None)
    assert TrainingStats.from_dict(st.to_dict()) == st
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.volume_fraction = (1.0, 0.0)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        st.image_volume_fractoin  # a typo is an error, not a silent None  # noqa: B018
    with pytest.raises(InputError):
        TrainingStats.from_dict([1, 2])  # type: ignore[arg-type]
    assert TrainingStats.from_dict(None) == TrainingStats() and TrainingStats().fractions() is None
    assert ModelConfig.from_dict({"patch_size": 32, "x": 1}).to_dict() == {"patch_size": 32, "x": 1}


def test_bundled_model_metadata_is_typed() -> None:
    from microlad.bundled import DEFAULT_MODEL, bundled_models, resolve_model

    if DEFAULT_MODEL not in bundled_models():
        pytest.skip("no bundled model in this build")
    m = MicroladModel.load(resolve_model(DEFAULT_MODEL))
    st = m.training_stats
    assert np.asarray(st.s2_radial_mean).shape == (m.n_phases, st.s2_cutoff + 1)
    assert len(st.fractions()) == m.n_phases and abs(sum(st.fractions()) - 1) < 1e-6
    assert st.report.steps["vae"] > 0 and st.report.vae_reconstruction.pixel_accuracy > 0.9
    assert not st.extra and not st.report.extra  # every stored entry is part of the contract
