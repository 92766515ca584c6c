"""``microlad models``: the bundled models as a user sees them, checked against their config.json."""
from __future__ import annotations

import json

from cli_helpers import assert_one_line_error, run_cli

from microlad.bundled import ASSETS, bundled_models


def test_models_lists_every_bundled_model_with_its_training_fractions(capsys):
    res = run_cli(capsys, "models")
    assert res.exit_code == 0, res
    assert bundled_models(), "the package ships at least one model"
    for name in bundled_models():
        doc = json.loads((ASSETS / name / "config.json").read_text())
        stats = doc["training_stats"]
        vf = stats.get("image_volume_fraction") or stats["volume_fraction"]
        block = res.stdout.split(f"{name}:", 1)[1].split("directory:", 1)[0]
        assert f"{len(doc['grey_values'])} phases" in block
        for inp in stats["report"]["inputs"]:
            assert inp.rsplit("/", 1)[-1] in block
        for p, v in enumerate(vf):
            row = next(ln for ln in block.splitlines() if ln.split()[:1] == [str(p)])
            assert f"{v:.4f}" in row
        prior = doc["config"].get("prior_sampler")
        if prior:  # the calibrated 2D sampler as stored
            assert f"2D prior sampler: {prior['sampler']}, {prior['steps']} steps" in block


def test_models_describes_a_model_directory(capsys, tmp_path):
    name = bundled_models()[0]
    res = run_cli(capsys, "models", str(ASSETS / name))
    assert res.exit_code == 0, res
    assert "VAE held-out pixel accuracy" in res.stdout


def test_models_unknown_name_is_one_line_error(capsys, tmp_path):
    res = run_cli(capsys, "models", str(tmp_path / "nope"))
    assert res.exit_code == 2
    assert_one_line_error(res, "not a bundled model")
