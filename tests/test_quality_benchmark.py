"""benchmarks/quality.py: its budget arithmetic, step timing and table (the runs themselves
are `medgan simulate`, tested elsewhere)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

import numpy as np  # noqa: E402

from benchmarks import quality  # noqa: E402
from client.data.sources import load_site_dataset  # noqa: E402
from medgan_models.config import RunConfig  # noqa: E402


def test_rounds_fill_the_budget_and_sites_beyond_the_cores_take_turns():
    two_waves = quality.rounds_for_budget(600, sites=3, local_steps=40, step_s=0.1, cores=2)
    one_wave = quality.rounds_for_budget(600, sites=1, local_steps=40, step_s=0.1, cores=2)
    assert one_wave == 2 * two_waves or one_wave == 2 * two_waves + 1
    assert two_waves * 40 * 0.1 * 2 * quality.ROUND_OVERHEAD <= 600
    assert quality.rounds_for_budget(1, sites=3, local_steps=40, step_s=0.1, cores=2) == 1


def test_step_time_is_measured_on_a_real_training_step():
    config = RunConfig(image_size=16, base_channels=8, latent_dim=8, batch_size=8)
    seconds = quality.step_seconds(config, steps=2)
    assert 0 < seconds < 10


def test_table_prints_every_setting_and_the_costs(capsys):
    row = {"rounds": 3, "seconds": 10.0, "epsilon_max": 10.0, "run": "r", "samples": "s.png",
           **{k: 0.5 for k in quality.METRICS}}
    results = {name: dict(row) for name in quality.SETTINGS}
    results["federated_dp"]["frd"] = 2.0
    quality.print_table(results)
    out = capsys.readouterr().out
    assert all(name in out for name in quality.SETTINGS)
    assert "cost of privacy: FRD 4.00x" in out and "cost of federation: FRD 4.00x" in out
    assert "TSTR/TRTR 0.50 vs 0.50" in out


def test_the_centralized_run_gets_exactly_the_federated_sites_images(tmp_path):
    path = tmp_path / "pooled.npz"
    n = quality.write_pooled_sites(path, image_size=16, samples_per_site=20)
    pooled = load_site_dataset(str(path), 0, 1, 16, 1)
    sites = [load_site_dataset("phantom", i, 3, 16, 1, alpha=quality.ALPHA, samples_per_site=20)
             for i in range(3)]
    assert n == len(pooled) == sum(len(s) for s in sites) == 60
    assert np.array_equal(np.sort(pooled.labels), np.sort(np.concatenate([s.labels for s in sites])))
    assert np.abs(pooled.images[:len(sites[0])] - sites[0].images).max() <= 1 / 127.5 + 1e-6
