"""Script configs: YAML/JSON + --key=value, unknown keys and bad values rejected."""

import pytest

from training.config import load_config
from training.data.errors import ConfigError
from training.stage1.train import Stage1Config
from training.stage2.train import Stage2Config


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("cache_dir: a\nsteps: 10\nlr: 1.0e-3\n")
    cfg = load_config(Stage1Config, [str(path), "--steps=20", "--loss", "megastyle", "--finetune_siglip=false"])
    assert (cfg.cache_dir, cfg.steps, cfg.lr, cfg.loss) == ("a", 20, 1e-3, "megastyle")
    (tmp_path / "c.json").write_text('{"cache_dir": "b", "model": "tiny"}')
    assert load_config(Stage2Config, [str(tmp_path / "c.json")]).model == "tiny"


@pytest.mark.parametrize("argv, message", [
    (["--cache_dir=a", "--stpes=3"], "unknown option 'stpes'. Did you mean steps"),
    (["--cache_dir=a", "--steps=many"], "steps: expected an integer"),
    (["--cache_dir=a", "--loss=triplet"], "loss must be one of"),
    (["--cache_dir=a", "--finetune_siglip=true", "--manifest=m", "--siglip=s"], "cached SigLIP features"),
    (["--finetune_siglip=true"], "needs manifest and siglip"),
    ([], "cache_dir is required"),
    (["--cache_dir=a", "--steps"], "needs a value"),
])
def test_stage1_config_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Stage1Config, argv)


def test_stage2_config_errors():
    with pytest.raises(ConfigError, match="base_dtype=bfloat16 needs mixed_precision=bf16"):
        load_config(Stage2Config, ["--cache_dir=c", "--model=tiny", "--base_dtype=bfloat16"])
    with pytest.raises(ConfigError, match="alignment must be one of"):
        load_config(Stage2Config, ["--cache_dir=c", "--model=tiny", "--alignment=fixed"])


@pytest.mark.parametrize("option", ["--sigma_shift=0", "--sigma_shift=nan", "--sigma_std=-1", "--sigma_mean=inf"])
def test_stage2_noise_levels_must_be_finite_and_positive(option):
    with pytest.raises(ConfigError, match="sigma_std, sigma_shift positive finite"):
        load_config(Stage2Config, ["--cache_dir=c", "--model=tiny", option])


@pytest.mark.parametrize("shift", [0.0, -3.0, float("nan"), float("inf")])
def test_demo_sigma_shift_must_be_positive_and_finite(shift):
    from training.demo.__main__ import DemoConfig

    with pytest.raises(ConfigError, match="stage2_sigma_shift must be a positive finite number"):
        DemoConfig(stage2_sigma_shift=shift)


def test_entry_points_list_their_options_and_report_user_errors_in_one_line():
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "training.stage2", *args], capture_output=True, text=True,
                              timeout=300)

    shown = run("--help")
    assert shown.returncode == 0, shown.stderr
    assert "--lr=" in shown.stdout and "--targets=" in shown.stdout
    bad = run("--lr=abc")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: lr: expected a number, got 'abc'."
    assert "Traceback" not in bad.stderr


def test_shipped_yaml_and_dataclass_defaults_agree():
    """Running with or without configs/stage1.yaml trains the same way (only the cache path is the user's)."""
    import dataclasses

    from pathlib import Path

    import yaml

    configs = Path(__file__).resolve().parents[2] / "training" / "configs"
    values = yaml.safe_load((configs / "stage1.yaml").read_text())
    defaults = {f.name: f.default for f in dataclasses.fields(Stage1Config)}
    differ = {k: (v, defaults[k]) for k, v in values.items() if k != "cache_dir" and defaults[k] != v}
    assert not differ, f"stage1.yaml vs Stage1Config defaults (yaml, dataclass): {differ}"
    stage2 = yaml.safe_load((configs / "stage2.yaml").read_text())
    assert stage2["targets"] == Stage2Config.targets == "attention+mlp"  # the paper's attention + FFN
