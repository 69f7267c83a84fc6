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


def test_a_broken_toml_file_is_named(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("num-rounds = = 3\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        parse("--config", str(path))


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoints"):
        parse("--resume", str(tmp_path))
