"""Server optimisers (FedAvgM, FedAdam) and the generator's average over rounds."""

import numpy as np
import pytest
import torch

from medgan_models.config import ConfigError, RunConfig
from server.checkpoint import latest_checkpoint, load_checkpoint
from server.server_optimizer import (FedAdam, FedAvgM, ServerOptimizer, ema_decay, ema_update,
                                     make_server_optimizer)
from simulation.cli import main


def test_plain_aggregation_is_the_identity():
    aggregate = {"w": np.ones(3, np.float32)}
    assert ServerOptimizer().step({"w": np.zeros(3, np.float32)}, aggregate) is aggregate


def test_fedavgm_accumulates_momentum_and_keeps_integer_buffers():
    optimizer = FedAvgM(learning_rate=1.0, momentum=0.5)
    current = {"w": np.zeros(2, np.float32), "steps": np.array(3, np.int64)}
    first = optimizer.step(current, {"w": np.ones(2, np.float32), "steps": np.array(4, np.int64)})
    assert np.allclose(first["w"], 1.0) and first["steps"] == 4 and first["w"].dtype == np.float32
    # the same pseudo-gradient again: velocity 0.5 * 1 + 1 = 1.5
    second = optimizer.step(first, {"w": first["w"] + 1, "steps": np.array(5, np.int64)})
    assert np.allclose(second["w"], 2.5)


def test_fedadam_first_step_moves_each_coordinate_by_about_the_learning_rate():
    optimizer = FedAdam(learning_rate=0.01, beta1=0.9, beta2=0.99, tau=1e-9)
    current = {"w": np.zeros(3, np.float32)}
    out = optimizer.step(current, {"w": np.array([5.0, -0.1, 0.0], np.float32)})
    # m = 0.1 d, v = 0.01 d^2: the step is lr * sign(d), whatever the size of d
    assert np.allclose(out["w"], [0.01, -0.01, 0.0], atol=1e-6)


def test_ema_starts_at_the_weights_then_averages():
    first = ema_update(None, {"g": np.array([2.0]), "n": np.array(1)}, 0.9)
    second = ema_update(first, {"g": np.array([12.0]), "n": np.array(2)}, 0.9)
    assert second["g"][0] == pytest.approx(3.0) and second["n"] == 2
    scalar = ema_update(ema_update(None, {"s": np.array(1.0)}, 0.5), {"s": np.array(3.0)}, 0.5)
    assert isinstance(scalar["s"], np.ndarray) and scalar["s"] == 2.0  # 0-d stays an array


def test_ema_decay_warms_up_then_stays_at_the_configured_decay():
    early = [ema_decay(0.9, t) for t in range(1, 6)]
    assert early == sorted(early) and early[0] == pytest.approx(2 / 11)
    assert ema_decay(0.9, 1000) == 0.9 and ema_decay(0.2, 3) == 0.2


def test_config_names_the_optimiser_and_rejects_bad_values():
    assert isinstance(make_server_optimizer(RunConfig(server_optimizer="fedadam")), FedAdam)
    with pytest.raises(ConfigError, match="server-optimizer"):
        RunConfig.from_mapping({"server-optimizer": "sgd"})
    with pytest.raises(ConfigError, match="generator-ema"):
        RunConfig.from_mapping({"generator-ema": 1.0})


TINY = ["--sites", "2", "--image-size", "16", "--local-steps", "3", "--batch-size", "16",
        "--samples-per-site", "64", "--seed", "1", "--device", "cpu"]


def test_a_run_with_server_momentum_and_an_averaged_generator_resumes_exactly(tmp_path):
    settings = tmp_path / "s.toml"
    settings.write_text('server-optimizer = "fedavgm"\nserver-learning-rate = 1.0\n'
                        'generator-ema = 0.5\neval-every = 0\n')
    run = tmp_path / "run"
    assert main(["simulate", *TINY, "--rounds", "1", "--noise-multiplier", "1.0", "--out", str(run),
                 "--config", str(settings)]) == 0
    first = load_checkpoint(latest_checkpoint(run))
    assert first.server_state["velocity"] and first.generator_ema
    # after one round the average is the generator itself
    for key, value in first.generator_ema.items():
        assert torch.equal(value, first.weights[key])
    # resume: the second round reads momentum and average back
    assert main(["simulate", "--resume", str(run), "--rounds", "2"]) == 0
    second = load_checkpoint(latest_checkpoint(run))
    assert second.round == 2
    key = "generator.project.0.weight"  # a trained weight: it moves every round
    decay = ema_decay(0.5, 2)  # warm-up: 3/12
    expected = decay * first.generator_ema[key] + (1 - decay) * second.weights[key]
    assert torch.allclose(second.generator_ema[key], expected, atol=1e-6)
    assert not torch.equal(second.release_weights[key], second.weights[key])
    assert main(["generate", "--run", str(run), "--n", "4", "--out", str(tmp_path / "g.npz")]) == 0
