"""How ``medgan simulate`` turns flags, a TOML file and a resumed run into one config."""

import pytest

from medgan_models.config import ConfigError
from simulation.cli import build_parser, simulate_config


def parse(*argv):
    return simulate_config(build_parser().parse_args(["simulate", *argv]))


def test_defaults_are_the_demo():
    config, sites = parse()
    assert sites == 3 and config.num_rounds == 20 and config.image_size == 32
    assert config.target_epsilon == config.max_epsilon == 10.0
    assert config.out_dir.startswith("runs/run-")


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('sites = 5\nnum-rounds = 7\nloss = "wasserstein"\nalpha = 0.3\n')
    config, sites = parse("--config", str(path), "--rounds", "2", "--epsilon", "4",
                          "--out", str(tmp_path / "o"))
    assert sites == 5 and config.num_rounds == 2 and config.loss == "wasserstein"
    assert config.alpha == 0.3 and config.target_epsilon == config.max_epsilon == 4.0
    assert config.out_dir == str(tmp_path / "o")


def test_set_overrides_the_flags_and_the_config_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('site-output-layer = true\nloss = "hinge"\n')
    config, _ = parse("--config", str(path), "--loss", "hinge", "--set",
                      "site-output-layer=false", "loss=minimax", "mean-embedding=2.5")
    assert config.site_output_layer is False and config.loss == "minimax"
    assert config.mean_embedding == 2.5
    config, _ = parse("--set", "loss=minimax", "--rounds", "3", "--set", "mean-embedding=0")
    assert config.loss == "minimax" and config.mean_embedding == 0  # both --set count
    with pytest.raises(ConfigError, match="did you mean 'site-output-layer'"):
        parse("--set", "site-output-layers=false")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse("--set", "site-output-layer")


def test_a_broken_toml_file_is_named(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("num-rounds = = 3\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        parse("--config", str(path))


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoints"):
        parse("--resume", str(tmp_path))
