"""benchmarks/quality.py: its budget arithmetic, step timing and table (the runs themselves
are `medgan simulate`, tested elsewhere)."""

import json
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from benchmarks import quality, quality_results  # noqa: E402
from client.data.sources import load_site_dataset  # noqa: E402
from medgan_models.config import ConfigError, RunConfig  # noqa: E402


def recorded_runs(monkeypatch) -> dict:
    """Replace ``run_setting`` by a stand-in that records each setting's (rounds, run-config
    keys) in the returned dict."""
    calls = {}

    def fake_run(name, rounds, out, base=None, **extra):
        calls[name] = (rounds, extra)
        return {"rounds": rounds, "seconds": 1.0, "epsilon_max": 10.0, "run": str(out),
                "samples": "s.png", **{k: 0.5 for k in quality.METRICS}}

    monkeypatch.setattr(quality, "run_setting", fake_run)
    return calls


def test_rounds_fill_the_budget_as_the_simulation_shares_the_cores():
    # 3 sites on 2 cores train at once, each at 2/3 speed: 1.5 site-steps per step, not 2 waves
    shared = quality.rounds_for_budget(600, sites=3, local_steps=40, step_s=0.1, cores=2)
    one_site = quality.rounds_for_budget(600, sites=1, local_steps=40, step_s=0.1, cores=2)
    waves = quality.rounds_for_budget(600, sites=4, local_steps=40, step_s=0.1, cores=2)
    for rounds, load in ((shared, 1.5), (one_site, 1), (waves, 2)):  # as many as fit, no more
        per_round = 40 * 0.1 * load * quality.ROUND_OVERHEAD + quality.ROUND_FIXED_S
        assert rounds * per_round <= 600 < (rounds + 1) * per_round
    assert one_site > shared > waves
    assert quality.rounds_for_budget(1, sites=3, local_steps=40, step_s=0.1, cores=2) == 1


def test_step_time_is_measured_on_a_real_training_step():
    config = RunConfig(image_size=16, base_channels=8, latent_dim=8, batch_size=8)
    seconds = quality.step_seconds(config, steps=2)
    assert 0 < seconds < 10


def test_step_time_is_the_fastest_block_so_a_busy_start_does_not_shrink_the_plan(monkeypatch):
    class SlowAtFirst:  # a machine busy for the warm-up and the first block of steps
        calls = 0

        def __init__(self, *args, **kwargs):
            pass

        def step(self):
            SlowAtFirst.calls += 1
            time.sleep(0.05 if SlowAtFirst.calls <= 3 else 0.001)

    monkeypatch.setattr(quality, "LocalTrainer", SlowAtFirst)
    config = RunConfig(image_size=16, base_channels=8, latent_dim=8, batch_size=8)
    seconds = quality.step_seconds(config, steps=2, blocks=3)
    assert SlowAtFirst.calls == 1 + 2 * 3
    assert seconds < 0.02


def test_table_prints_every_setting_and_the_costs(capsys):
    row = {"rounds": 3, "seconds": 10.0, "epsilon_max": 10.0, "run": "r", "samples": "s.png",
           **{k: 0.5 for k in quality.METRICS}}
    results = {name: dict(row) for name in quality.SETTINGS}
    results["federated_dp"]["frd"] = 2.0
    quality_results.print_table(results)
    out = capsys.readouterr().out
    assert all(name in out for name in quality.SETTINGS)
    assert "cost of privacy: FRD 4.00x" in out and "cost of federation: FRD 4.00x" in out
    assert "TSTR/TRTR 0.50 vs 0.50, coverage 0.50 vs 0.50, recall 0.50 vs 0.50" in out
    assert " none" not in out  # every run here is private
    results["nonprivate"].update(epsilon_max=1.08e9, coverage=0.4)
    quality_results.print_table(results)
    out = capsys.readouterr().out
    assert [line.split()[3] for line in out.splitlines() if line.startswith("nonprivate ")] == [
        "none"]
    assert "(federated DP / non-private), TSTR/TRTR 0.50 vs 0.50, coverage 0.50 vs 0.40" in out


def test_the_centralized_run_gets_exactly_the_federated_sites_images(tmp_path):
    path = tmp_path / "pooled.npz"
    n = quality.write_pooled_sites(path, image_size=16, samples_per_site=20)
    pooled = load_site_dataset(str(path), 0, 1, 16, 1)
    sites = [load_site_dataset("phantom", i, 3, 16, 1, alpha=quality.ALPHA, samples_per_site=20)
             for i in range(3)]
    assert n == len(pooled) == sum(len(s) for s in sites) == 60
    assert np.array_equal(np.sort(pooled.labels), np.sort(np.concatenate([s.labels for s in sites])))
    assert np.abs(pooled.images[:len(sites[0])] - sites[0].images).max() <= 1 / 127.5 + 1e-6


def test_several_seeds_give_the_mean_and_spread_of_each_metric(capsys):
    rows = [{"rounds": 3, "seconds": 10.0 + i, "epsilon_max": 10.0, "run": f"r{i}",
             "samples": f"s{i}.png", **{k: 0.5 for k in quality.METRICS}, "frd": frd}
            for i, frd in enumerate((30.0, 50.0, 40.0))]
    combined = quality_results.combine_seeds(rows)
    assert combined["frd"] == 40.0 and combined["spread"]["frd"] == 10.0
    assert combined["spread"]["coverage"] == 0.0 and combined["per_seed"] == rows
    assert quality_results.combine_seeds(rows[:1]) is rows[0]  # one seed: the run itself
    quality_results.print_table({name: combined for name in quality.SETTINGS})
    out = capsys.readouterr().out
    assert "over 3 seeds, standard deviation frd 10.000" in out


def test_the_pooled_file_follows_the_seeds_split(tmp_path):
    sizes = {}
    for seed in (0, 1):
        path = tmp_path / f"pooled{seed}.npz"
        quality.write_pooled_sites(path, image_size=16, samples_per_site=20, seed=seed)
        sites = [load_site_dataset("phantom", i, 3, 16, 1, alpha=quality.ALPHA, seed=seed,
                                   samples_per_site=20) for i in range(3)]
        pooled = load_site_dataset(str(path), 0, 1, 16, 1)
        assert np.array_equal(np.sort(pooled.labels),
                              np.sort(np.concatenate([s.labels for s in sites])))
        sizes[seed] = [len(s) for s in sites]
    assert sizes[0] != sizes[1]  # another seed, another Dirichlet split


def test_main_runs_every_setting_once_per_seed_in_its_own_folder(tmp_path, monkeypatch):
    calls = []

    def fake_run(name, rounds, out, base=None, **extra):
        assert base == {}  # no --set
        calls.append((name, out.relative_to(tmp_path).as_posix(), extra["seed"]))
        return {"rounds": rounds, "seconds": 1.0, "epsilon_max": 10.0, "run": str(out),
                "samples": "s.png", **{k: 0.1 * (1 + extra["seed"]) for k in quality.METRICS}}

    monkeypatch.setattr(quality, "run_setting", fake_run)
    monkeypatch.setattr(quality, "step_seconds", lambda config, device=None: 0.01)
    monkeypatch.setattr(quality, "write_pooled_sites", lambda path, seed: 60)
    out_json = tmp_path / "q.json"
    assert quality.main(["--out", str(tmp_path), "--seeds", "0", "1", "--json", str(out_json),
                         "--settings", "federated_dp", "centralized_dp"]) == 0
    assert calls == [("federated_dp", "seed-0/federated_dp", 0),
                     ("centralized_dp", "seed-0/centralized_dp", 0),
                     ("federated_dp", "seed-1/federated_dp", 1),
                     ("centralized_dp", "seed-1/centralized_dp", 1)]
    written = json.loads(out_json.read_text())
    assert set(written) == {"federated_dp", "centralized_dp"}
    assert abs(written["federated_dp"]["frd"] - 0.15) < 1e-9
    assert len(written["federated_dp"]["per_seed"]) == 2


def test_the_ceiling_setting_trains_on_the_pooled_file_with_given_rounds(tmp_path, monkeypatch):
    calls = recorded_runs(monkeypatch)
    monkeypatch.setattr(quality, "step_seconds", lambda config, device=None: 0.01)
    monkeypatch.setattr(quality, "write_pooled_sites", lambda path, seed: 60)
    assert quality.main(["--out", str(tmp_path), "--settings", "centralized_dp",
                         "centralized_nonprivate", "--rounds", "7", "--eval-every", "3"]) == 0
    pooled = str((tmp_path / quality.POOLED_FILE).resolve())
    for name in ("centralized_dp", "centralized_nonprivate"):
        rounds, extra = calls[name]
        assert rounds == 7 and extra["data"] == pooled and extra["eval-every"] == 3
        assert extra["device"] == "auto"  # the run config's device: a GPU where one is found
    assert quality.SETTINGS["centralized_nonprivate"]["noise-multiplier"] == 1e-3
    assert "centralized_nonprivate" not in quality.DEFAULT_SETTINGS


def test_the_iid_federation_splits_the_pooled_file_at_random_and_its_cost_is_printed(
        tmp_path, monkeypatch, capsys):
    calls = {}

    def fake_run(name, rounds, out, base=None, **extra):
        calls[name] = extra
        frd = {"federated_dp": 40.0, "federated_dp_iid": 20.0}[name]
        return {"rounds": rounds, "seconds": 1.0, "epsilon_max": 10.0, "run": str(out),
                "samples": "s.png", **{k: 0.5 for k in quality.METRICS}, "frd": frd}

    monkeypatch.setattr(quality, "run_setting", fake_run)
    monkeypatch.setattr(quality, "step_seconds", lambda config, device=None: 0.01)
    monkeypatch.setattr(quality, "write_pooled_sites", lambda path, seed: 60)
    assert quality.main(["--out", str(tmp_path), "--settings", "federated_dp",
                         "federated_dp_iid", "--rounds", "2"]) == 0
    assert calls["federated_dp_iid"]["data"] == str((tmp_path / quality.POOLED_FILE).resolve())
    assert "data" not in calls["federated_dp"]  # the phantom sites, each its own scanner
    assert quality.SETTINGS["federated_dp_iid"]["sites"] == 3
    assert quality.SETTINGS["federated_dp_iid"]["alpha"] == 0.0  # IID split
    assert "cost of the sites' differences: FRD 2.00x" in capsys.readouterr().out


def write_run(out, rounds, rejected=()):
    """A run folder as ``medgan simulate`` leaves it: ``rejected``, the rounds a site missed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(
        {"rounds": rounds, "epsilon_max": 1.0, "samples": "s.png", "metrics": {"frd": 1.0}}))
    (out / "metrics.jsonl").write_text("".join(
        json.dumps({"round": r, "rejected": ["node 7: Flower error: OutOfMemoryError"]
                    if r in rejected else [], "absent": []}) + "\n"
        for r in range(1, rounds + 1)))


def test_a_run_that_lost_a_site_or_stopped_early_is_flagged(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(quality, "run_forwarding_ctrl_c", lambda command, cwd: write_run(
        Path(command[command.index("--out") + 1]), rounds=4, rejected=(3, 4)))
    row = quality.run_setting("federated_dp", 6, tmp_path / "federated_dp")
    assert row["rounds"] == 4 and row["missed_rounds"] == 2
    out = capsys.readouterr().out
    assert "WARNING: federated_dp ran 4 of 6 rounds, 2 of them without every site" in out
    assert "node 7: Flower error: OutOfMemoryError" in out
    two_seeds = quality_results.combine_seeds([row, {**row, "run": "b"}])
    quality_results.print_table({"federated_dp": two_seeds})
    assert "federated_dp: 4 rounds went without every site" in capsys.readouterr().out
    monkeypatch.setattr(quality, "run_forwarding_ctrl_c", lambda command, cwd: write_run(
        Path(command[command.index("--out") + 1]), rounds=6))
    assert quality.run_setting("nonprivate", 6, tmp_path / "nonprivate")["missed_rounds"] == 0
    assert "WARNING" not in capsys.readouterr().out


def test_set_adds_run_config_keys_under_each_settings_own(tmp_path, monkeypatch):
    overrides = quality.parse_overrides(["site-output-layer=true", "mean-embedding-noise=1",
                                         "num-sites=auto", "learning-rate-generator = 1e-4"])
    assert overrides == {"site-output-layer": True, "mean-embedding-noise": 1,
                         "num-sites": "auto", "learning-rate-generator": 1e-4}

    def fake_simulate(command, cwd):
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True)
        write_run(out, rounds=2)
        return 0

    monkeypatch.setattr(quality, "run_forwarding_ctrl_c", fake_simulate)
    quality.run_setting("nonprivate", 2, tmp_path / "nonprivate", overrides, seed=3)
    written = tomllib.loads((tmp_path / "nonprivate.toml").read_text())
    assert written["site-output-layer"] is True and written["seed"] == 3
    assert written["mean-embedding-noise"] == 1e-3  # the setting's own key wins: no noise
    for bad, message in (["learning-rate-generatr=1"], "did you mean 'learning-rate-generator'"), \
                        (["site-output-layer"], "--set takes KEY=VALUE"):
        with pytest.raises(ConfigError, match=message):
            quality.parse_overrides(bad)
    with pytest.raises(SystemExit):
        quality.main(["--set", "no-such-key=1", "--out", str(tmp_path)])


def test_evaluations_spread_over_the_planned_rounds_and_cpu_runs_plan_per_core(tmp_path,
                                                                               monkeypatch):
    calls = recorded_runs(monkeypatch)
    monkeypatch.setattr(quality, "step_seconds", lambda config, device=None: 0.01)
    monkeypatch.setattr(quality.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(quality, "available_memory", lambda: 8 * 2**30)
    assert quality.main(["--out", str(tmp_path), "--settings", "federated_dp", "--minutes", "1",
                         "--evaluations", "4", "--device", "cpu"]) == 0
    rounds, extra = calls["federated_dp"]
    assert rounds == quality.rounds_for_budget(60, 3, RunConfig().local_steps, 0.01, 2)
    assert extra["eval-every"] == -(-rounds // 4) and extra["device"] == "cpu"
    with pytest.raises(SystemExit):  # one way to say when to evaluate
        quality.main(["--out", str(tmp_path), "--eval-every", "2", "--evaluations", "4"])


def test_on_a_gpu_the_sites_are_planned_to_train_at_once(tmp_path, monkeypatch, capsys):
    calls = recorded_runs(monkeypatch)
    monkeypatch.setattr(quality, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(quality.torch.cuda, "get_device_name", lambda device: "Test GPU")
    monkeypatch.setattr(quality, "step_seconds", lambda config, device=None: 0.03)
    monkeypatch.setattr(quality.os, "cpu_count", lambda: 16)
    assert quality.main(["--out", str(tmp_path), "--settings", "federated_dp", "--minutes", "6",
                         "--device", "cuda"]) == 0
    rounds, extra = calls["federated_dp"]
    steps = RunConfig().local_steps
    assert rounds == quality.rounds_for_budget(360, 3, steps, 0.03, 16, quality.GPU_SITES_AT_ONCE)
    assert rounds > quality.rounds_for_budget(360, 3, steps, 0.03, 16, 1)  # not taking turns
    assert extra["device"] == "cuda" and "Test GPU" in capsys.readouterr().out


def write_result(path: Path, run: str, **metrics: float) -> Path:
    """A one-seed ``--json`` file of the federated DP setting (other metrics 0.5)."""
    row = {"rounds": 160, "seconds": 900.0, "epsilon_max": 10.0, "run": run,
           "samples": f"{run}/s.png", **{k: 0.5 for k in quality.METRICS}, **metrics}
    path.write_text(json.dumps({"federated_dp": row}))
    return path


def test_combine_merges_seeds_run_apart_into_one_table(tmp_path, capsys):
    seed0 = write_result(tmp_path / "s0.json", "runs/seed-0", coverage=0.2, frd=20.0)
    seed1 = write_result(tmp_path / "s1.json", "runs/seed-1", coverage=0.4, frd=30.0)
    # a file of two seeds (--seeds 2 3) counts each of its runs
    rows = [json.loads(write_result(tmp_path / f"x{seed}.json", f"runs/seed-{seed}",
                                    coverage=0.3).read_text())["federated_dp"]
            for seed in (2, 3)]
    both = {"federated_dp": quality_results.combine_seeds(rows)}
    (tmp_path / "s23.json").write_text(json.dumps(both))
    out = tmp_path / "all.json"
    assert quality.main(["--combine", str(seed0), str(seed1), str(tmp_path / "s23.json"),
                         "--json", str(out)]) == 0
    result = json.loads(out.read_text())["federated_dp"]
    assert len(result["per_seed"]) == 4
    assert result["coverage"] == pytest.approx(0.3)
    assert result["spread"]["coverage"] == pytest.approx(np.std([0.2, 0.4, 0.3, 0.3], ddof=1))
    assert result["frd"] == pytest.approx(np.mean([20, 30, 0.5, 0.5]))
    printed = capsys.readouterr().out
    assert "federated_dp: over 4 seeds" in printed and "runs/seed-1" in printed


@pytest.mark.parametrize("problem, reason", [
    ("same run twice", "run runs/seed-0 is also in"), ("not a result", "not a --json file"),
    ("unknown setting", "unknown setting 'federated_sgd'"), ("no metrics", "without seconds")])
def test_combine_names_the_file_it_cannot_use(tmp_path, capsys, problem, reason):
    first = write_result(tmp_path / "a.json", "runs/seed-0")
    bad = tmp_path / "b.json"
    if problem == "same run twice":
        write_result(bad, "runs/seed-0")
    elif problem == "not a result":
        bad.write_text("[1, 2]")
    elif problem == "unknown setting":
        bad.write_text(json.dumps({"federated_sgd": {"run": "r"}}))
    else:
        bad.write_text(json.dumps({"nonprivate": {"run": "r", "rounds": 3}}))
    with pytest.raises(SystemExit):
        quality.main(["--combine", str(first), str(bad)])
    error = capsys.readouterr().err
    assert f"{bad}: " in error and reason in error


def test_ctrl_c_keeps_the_runs_that_ended_in_the_table_and_json(tmp_path, monkeypatch, capsys):
    def fake_run(name, rounds, out, base=None, **extra):
        if name == "centralized_dp":
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the second run
        return {"rounds": rounds, "seconds": 1.0, "epsilon_max": 10.0, "run": str(out),
                "samples": "s.png", **{k: 0.5 for k in quality.METRICS}}

    monkeypatch.setattr(quality, "run_setting", fake_run)
    monkeypatch.setattr(quality, "step_seconds", lambda config, device=None: 0.01)
    monkeypatch.setattr(quality, "write_pooled_sites", lambda path, seed: 60)
    out_json = tmp_path / "q.json"
    assert quality.main(["--out", str(tmp_path), "--rounds", "2", "--json", str(out_json)]) == 130
    out = capsys.readouterr().out
    assert f"interrupted: {tmp_path / 'centralized_dp'} keeps its finished rounds" in out
    assert set(json.loads(out_json.read_text())) == {"federated_dp"}  # not the unfinished ones
