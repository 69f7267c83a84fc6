"""End to end on Flower's simulation engine: run folder, resume, budget stop, CLI errors."""

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from client.privacy_ledger import PrivacyLedger
from simulation.cli import main

# RDP: its noise search takes milliseconds where PRV's takes seconds per site (the default PRV
# runs end to end in tests/test_audit.py)
TINY = ["--sites", "2", "--image-size", "16", "--local-steps", "3", "--batch-size", "16",
        "--samples-per-site", "64", "--seed", "1", "--device", "cpu", "--accountant", "rdp"]


def finite(value):
    return value is not None and math.isfinite(value)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "run"
    cheap_eval = out.parent / "eval.toml"
    cheap_eval.write_text("eval-samples = 40\ntstr-steps = 10\nholdout-fraction = 0.2\n")
    assert main(["simulate", *TINY, "--rounds", "2", "--out", str(out),
                 "--config", str(cheap_eval)]) == 0
    return out


def test_run_writes_every_file_with_finite_values(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    for record in records:
        assert set(record["clients"]) == {"site-0", "site-1"}
        for client in record["clients"].values():
            for key in ("epsilon", "delta", "d_loss", "g_loss", "noise_multiplier",
                        "sample_rate", "max_grad_norm"):
                assert finite(client[key]), key
            assert client["num_examples"] > 0 and client["steps"] == 3
        assert record["epsilon_max"] == max(c["epsilon"] for c in record["clients"].values())
        timing = record["timing"]
        assert 0 < timing["local_training_s"] <= timing["communicate_s"] <= record["seconds"]
        assert timing["local_training_sum_s"] >= timing["local_training_s"]
    assert records[1]["epsilon_max"] > records[0]["epsilon_max"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["stopped"] == "completed"
    metrics = summary["metrics"]
    for key in ("frd", "precision", "recall", "density", "coverage", "tstr_accuracy",
                "trtr_accuracy"):
        assert finite(metrics[key]), key
    assert metrics["frd"] > 0 and "fid" not in metrics  # no Inception file given
    assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["tstr_accuracy"] <= 1
    # each site's own figures, and the headline is their held-out-weighted mean
    per_site = metrics["sites"]
    assert set(per_site) == {"site-0", "site-1"}
    weights = [s["eval_examples"] for s in per_site.values()]
    assert metrics["coverage"] == pytest.approx(
        sum(s["coverage"] * w for s, w in zip(per_site.values(), weights)) / sum(weights))
    # the default eval-every 4: round 1 not evaluated (the last round always is)
    assert ["metrics" in r for r in records] == [False, True]
    assert (run_dir / "metrics.png").stat().st_size > 1000
    assert summary["epsilon_max"] == pytest.approx(records[1]["epsilon_max"])
    assert summary["delta"] == 1e-5 and summary["seconds"] > 0
    assert set(summary["clients"]) == {"site-0", "site-1"}
    for n in (1, 2):
        grid = Image.open(run_dir / "samples" / f"round_{n:03d}.png")
        assert grid.size[0] > 16 * 8 and np.asarray(grid).std() > 0
        assert (run_dir / "checkpoints" / f"round_{n:03d}.pt").exists()


def test_generate_writes_png_and_npz(run_dir, tmp_path):
    assert main(["generate", "--run", str(run_dir), "--n", "6", "--out", str(tmp_path / "png"),
                 "--label", "1"]) == 0
    files = sorted((tmp_path / "png").glob("*.png"))
    assert len(files) == 6 and all("class1" in f.name for f in files)
    assert Image.open(files[0]).size == (16, 16)
    assert main(["generate", "--run", str(run_dir), "--n", "5",
                 "--out", str(tmp_path / "s.npz")]) == 0
    archive = np.load(tmp_path / "s.npz")
    assert archive["images"].shape == (5, 16, 16) and archive["images"].dtype == np.uint8
    assert list(archive["labels"]) == [0, 0, 0, 1, 1]


def test_resume_after_a_crash_continues_rounds_and_epsilon(run_dir, tmp_path):
    crashed = tmp_path / "crashed"
    shutil.copytree(run_dir, crashed)
    # the server died during round 2: its round-2 outputs never reached disk,
    # but the sites had already spent round 2's budget (their ledgers say so)
    (crashed / "checkpoints" / "round_002.pt").unlink()
    lines = (crashed / "metrics.jsonl").read_text().splitlines()
    (crashed / "metrics.jsonl").write_text(lines[0] + "\n")
    round1 = json.loads(lines[0])["epsilon_max"]
    assert main(["simulate", "--resume", str(crashed), "--epsilon", "30"]) == 0
    records = [json.loads(x) for x in (crashed / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    ledger = PrivacyLedger.load(crashed / "site-state" / "site-0" / "privacy_ledger.json")
    assert ledger.rounds == [1, 2, 2]  # the redone round is charged too: honest
    assert records[1]["epsilon_max"] > json.loads(lines[1])["epsilon_max"] > round1


def test_budget_exhaustion_ends_the_run_cleanly(tmp_path, capsys):
    out = tmp_path / "budget"
    # sigma fixed and small: round 1 fits under max-epsilon 6, round 2 would not
    code = main(["simulate", *TINY, "--rounds", "4", "--noise-multiplier", "0.8",
                 "--epsilon", "6", "--local-steps", "20", "--out", str(out)])
    assert code == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["excluded"] == ["site-0", "site-1"]
    assert all(c["status"] == "budget-exhausted" for c in records[-1]["clients"].values())
    summary = json.loads((out / "summary.json").read_text())
    assert "no site can train within its max-epsilon" in summary["stopped"]
    assert summary["epsilon_max"] <= 6.0
    assert "no site can train" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--data", "/no/such/folder"], "/no/such/folder"),
    (["--image-size", "20"], "image-size 20 is not supported"),
    (["--config", "CONFIG"], "unknown config key 'num-round' (did you mean 'num-rounds'?)"),
    (["--sites", "0"], "--sites must be >= 1"),
    (["--data", "EMPTY"], "EMPTY"),
])
def test_bad_input_is_one_line_not_a_traceback(args, message, tmp_path, capsys):
    (tmp_path / "bad.toml").write_text("num-round = 3\n")
    (tmp_path / "empty").mkdir()
    args = [a.replace("CONFIG", str(tmp_path / "bad.toml")).replace("EMPTY", str(tmp_path / "empty"))
            for a in args]
    message = message.replace("EMPTY", str(tmp_path / "empty"))
    assert main(["simulate", *TINY, *args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medgan: error:") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_existing_run_is_not_overwritten(run_dir, capsys):
    assert main(["simulate", *TINY, "--out", str(run_dir)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_evaluate_recomputes_a_checkpoints_metrics_raw_or_with_more_samples(run_dir, tmp_path,
                                                                             capsys):
    assert main(["evaluate", "--run", str(run_dir)]) == 0
    released = run_dir / "evaluation_round_002.json"
    before = released.read_text()
    result = json.loads(before)
    assert result["round"] == 2 and finite(result["metrics"]["frd"])
    assert result["generator"] == "released" and result["eval_samples"] == 40  # the run's own
    assert set(result["metrics"]["sites"]) == {"site-0", "site-1"}
    assert "site-1" in capsys.readouterr().out  # one line per site
    assert main(["evaluate", "--run", str(run_dir), "--generator", "raw"]) == 0
    raw = json.loads((run_dir / "evaluation_round_002_raw.json").read_text())
    assert raw["generator"] == "raw" and raw["eval_samples"] == 40
    # generator-ema is on by default: round 2 releases an average of rounds 1 and 2, not the
    # raw aggregate, so their distances to the real data differ
    assert finite(raw["metrics"]["frd"]) and raw["metrics"]["frd"] != result["metrics"]["frd"]
    assert main(["evaluate", "--run", str(run_dir), "--eval-samples", "60"]) == 0
    more = json.loads((run_dir / "evaluation_round_002_n60.json").read_text())
    assert more["generator"] == "released" and more["eval_samples"] == 60
    assert released.read_text() == before  # each variant has a file of its own
    assert main(["evaluate", "--run", str(run_dir), "--eval-samples", "5"]) == 2
    assert "eval-samples must be >= 10" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_embedding_noise_reads_every_site_of_a_simulated_run(run_dir, capsys):
    """benchmarks/embedding_noise.py on a finished run: a row per site and class, each site's
    release read back and its clean mean recomputed from the site's own images."""
    from benchmarks import embedding_noise

    rows = embedding_noise.run_alignment(run_dir)
    assert {r["site"] for r in rows} == {"site-0", "site-1"}
    for r in rows:
        assert r["images"] >= embedding_noise.MIN_CLASS_IMAGES and -1 <= r["cosine"] <= 1
        # 1,024 features, noise multiplier 5, a few dozen images: the noise dwarfs the rest
        assert r["noise_norm"] > r["fake_to_clean"] > 0 and not r["matched"]
        assert r["fake_to_release"] <= r["fake_to_clean"] + r["noise_norm"] + 1e-5
    assert embedding_noise.main([str(run_dir)]) == 0
    assert capsys.readouterr().out.count("not matched") == len(rows)
