"""The privacy audit: accountant cross-check, ROC figures, canaries, attacks, ``medgan audit``."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from audit.accounting import agrees, pld_epsilon, site_accounting
from audit.attacks import gan_leaks_scores, generated_pool, logan_scores, nearest_distances
from audit.canary_audit import one_run_audit
from audit.report import report_markdown
from audit.roc import AttackOutcome, roc_auc, roc_curve, tpr_at_fpr
from client.data import SiteData, load_site_dataset
from client.data.canaries import make_canaries, with_canaries
from client.dp_training import train_locally
from client.privacy_ledger import LedgerEntry, PrivacyLedger
from medgan_models.config import RunConfig
from medgan_models.networks import build_models
from simulation.cli import main


# --- accounting -----------------------------------------------------------------------------

@pytest.mark.parametrize("q", [0.01, 0.05, 0.1])
@pytest.mark.parametrize("sigma", [0.8, 1.0, 2.0])
@pytest.mark.parametrize("steps", [100, 1000])
def test_prv_and_pld_agree_within_five_percent(q, sigma, steps):
    ledger = PrivacyLedger([LedgerEntry(1, sigma, q, steps // 2),
                            LedgerEntry(2, sigma, q, steps - steps // 2)])
    result = site_accounting("site-0", ledger, 1e-5, "prv")
    if result.epsilon_crosscheck >= 0.5:  # below, PRV's fixed 0.01 rounding dominates
        assert result.epsilon == pytest.approx(result.epsilon_crosscheck, rel=0.05)
    assert result.agrees


def test_pld_matches_a_published_value_and_composes_runs():
    # Opacus' PRV gives 5.56 here (see FACTS.md); PLD is as tight.
    assert pld_epsilon([(1.0, 0.064, 160)], 1e-5) == pytest.approx(5.55, abs=0.05)
    split = pld_epsilon([(1.0, 0.064, 60), (1.0, 0.064, 100)], 1e-5)
    assert split == pytest.approx(pld_epsilon([(1.0, 0.064, 160)], 1e-5), rel=1e-3)
    assert pld_epsilon([], 1e-5) == 0.0
    assert pld_epsilon([(0.0, 0.1, 10)], 1e-5) == float("inf")


def test_disagreement_is_flagged_one_sided_for_rdp():
    assert not agrees(8.0, 10.0, "prv") and not agrees(11.0, 10.0, "prv")
    assert agrees(10.3, 10.0, "prv")
    assert agrees(11.0, 10.0, "rdp")  # RDP is a looser upper bound: fine
    assert not agrees(9.0, 10.0, "rdp")  # but under-reporting is not
    assert agrees(0.13, 0.12, "prv")  # PRV's 0.01 rounding at small epsilon


# --- ROC figures ----------------------------------------------------------------------------

def test_roc_auc_is_the_mann_whitney_statistic():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    members, nonmembers = rng.integers(0, 6, 80).astype(float), rng.integers(0, 5, 60) * 1.0
    expected = mannwhitneyu(members, nonmembers).statistic / (80 * 60)
    assert roc_auc(members, nonmembers) == pytest.approx(expected)
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.ones(5), np.ones(7)) == pytest.approx(0.5)
    fpr, tpr = roc_curve(members, nonmembers)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_tpr_at_low_fpr_and_the_summary():
    members, nonmembers = np.arange(100, 200.0), np.arange(0, 100.0)
    fpr, tpr = roc_curve(members, nonmembers)
    assert tpr_at_fpr(fpr, tpr, 0.01) == 1.0
    summary = AttackOutcome("x", "d", members, nonmembers).summary(delta=1e-5)
    assert summary["auc"] == 1.0 and summary["tpr_at_fpr_0.01"] == 1.0
    assert summary["epsilon_lower_bound"] > 2  # 100/100 separated: a strong bound
    noise = np.random.default_rng(1).normal(size=(2, 100))
    assert AttackOutcome("x", "d", *noise).summary(delta=1e-5)["epsilon_lower_bound"] < 1


# --- canaries -------------------------------------------------------------------------------

def test_canaries_are_deterministic_distinct_and_half_included():
    a, b = make_canaries(200, 16, 1, 2, seed=3), make_canaries(200, 16, 1, 2, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.included, b.included)
    assert not np.array_equal(a.included, make_canaries(200, 16, 1, 2, seed=4).included)
    assert a.images.shape == (200, 1, 16, 16) and np.abs(a.images).max() <= 1
    assert 70 < a.included.sum() < 130 and set(np.unique(a.labels)) == {0, 1}
    flat = a.images.reshape(200, -1)
    assert nearest_distances(flat[:20].reshape(20, 1, 16, 16),
                             flat[20:].reshape(180, 1, 16, 16)).min() > 0.05


def test_with_canaries_adds_exactly_the_included_ones():
    train = load_site_dataset("phantom", 0, 1, 16, 1, samples_per_site=30, seed=0)
    canaries = make_canaries(10, 16, 1, 2, seed=0)
    joined = with_canaries(train, canaries)
    assert len(joined) == len(train) + canaries.included.sum()
    assert np.array_equal(joined.images[len(train):], canaries.images[canaries.included])


def test_one_run_audit_counts_guesses():
    included = np.random.default_rng(0).random(100) < 0.5
    perfect = one_run_audit(included + 0.0, included)
    assert perfect["guesses"] == 50 and perfect["correct"] == 50
    assert perfect["epsilon_lower_bound"] > 1
    wrong = one_run_audit(-(included + 0.0), included)
    assert wrong["correct"] == 0 and wrong["epsilon_lower_bound"] == 0
    with pytest.raises(ValueError, match="canary scores"):
        one_run_audit(np.zeros(3), included)


# --- attacks on a deliberately overfit, non-private GAN ----------------------------------------

@pytest.fixture(scope="module")
def overfit_gan():
    """32 training images, 600 steps, no noise: both models memorise. 96 reference images
    calibrate GAN-Leaks (a small reference set makes the calibration itself noisy)."""
    torch.manual_seed(0)
    data = load_site_dataset("phantom", 0, 1, 16, 1, samples_per_site=160, seed=0)
    order = np.random.default_rng(0).permutation(len(data))

    def part(index):
        return SiteData(data.images[index], data.labels[index], 2, data.class_names, "phantom")

    members, nonmembers, reference = part(order[:32]), part(order[32:64]), part(order[64:])
    config = RunConfig(image_size=16, batch_size=32, local_steps=600, max_grad_norm=1e6,
                       accountant="rdp", learning_rate_discriminator=1e-3,
                       learning_rate_generator=2e-3, mean_embedding=0.0)  # a plain GAN
    generator, discriminator = build_models(config)
    train_locally(generator, discriminator, members, config, 1e-6, torch.device("cpu"), seed=1)
    return generator, discriminator, members, nonmembers, reference


def test_attacks_find_the_members_of_an_overfit_gan(overfit_gan):
    generator, discriminator, members, nonmembers, reference = overfit_gan
    logan = AttackOutcome("logan", "", logan_scores(discriminator, members.images, members.labels),
                          logan_scores(discriminator, nonmembers.images, nonmembers.labels))
    pool = generated_pool(generator, 2, 500, seed=0)
    leaks = AttackOutcome(
        "gan-leaks", "",
        gan_leaks_scores(members.images, members.labels, pool, reference.images, reference.labels),
        gan_leaks_scores(nonmembers.images, nonmembers.labels, pool, reference.images,
                         reference.labels))
    for outcome in (logan, leaks):
        summary = outcome.summary(delta=1e-5)
        assert summary["auc"] > 0.8, outcome.name
    assert max(o.summary(1e-5)["epsilon_lower_bound"] for o in (logan, leaks)) > 0


def test_gan_leaks_is_exact_against_a_generator_that_copies():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.uniform(-1, 1, (2, 20, 1, 8, 8)).astype(np.float32)
    labels = np.zeros(20, dtype=np.int64)
    pool = {0: members + 0.01}
    assert roc_auc(gan_leaks_scores(members, labels, pool),
                   gan_leaks_scores(nonmembers, labels, pool)) == 1.0


# --- medgan audit, end to end ---------------------------------------------------------------

TINY = ["--sites", "2", "--image-size", "16", "--local-steps", "6", "--batch-size", "16",
        "--samples-per-site", "120", "--seed", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "run"
    cheap_eval = out.parent / "eval.toml"
    cheap_eval.write_text("eval-samples = 40\ntstr-steps = 10\nholdout-fraction = 0.3\n")
    assert main(["simulate", *TINY, "--rounds", "2", "--epsilon", "1", "--canaries", "40",
                 "--out", str(out), "--config", str(cheap_eval)]) == 0
    return out


@pytest.fixture(scope="module")
def audited_run(private_run):
    """The private run after one `medgan audit`, and what it printed (each test that reads the
    audit's files gets them, whatever runs first)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["audit", "--run", str(private_run), "--samples-per-class", "200"]) == 0
    return private_run, printed.getvalue()


def test_medgan_audit_writes_the_report(audited_run):
    private_run, printed = audited_run
    assert "empirical epsilon lower bound" in printed
    result = json.loads((private_run / "audit.json").read_text())
    for key in ("epsilon", "epsilon_crosscheck", "delta", "attacks", "epsilon_lower_bound"):
        assert key in result
    assert 0.5 < result["epsilon"] <= 1.0 + 1e-6
    assert result["epsilon_crosscheck"] == pytest.approx(result["epsilon"], rel=0.05)
    assert result["accounting_agrees"] and not result["red_flag"]
    assert {a["name"] for a in result["attacks"]} == {"gan-leaks", "logan"}
    for attack in result["attacks"]:
        assert 0 <= attack["auc"] <= 1 and 0 <= attack["tpr_at_fpr_0.01"] <= 1
        assert attack["epsilon_lower_bound"] <= result["epsilon_lower_bound"]
    # strong privacy: the attacks prove less than the guarantee
    assert result["epsilon_lower_bound"] < result["epsilon"]
    canary = result["canary_audit"]
    assert canary["canaries"] == 40 and canary["guesses"] == 20
    site0 = next(s for s in result["sites"] if s["site"] == "site-0")
    site1 = next(s for s in result["sites"] if s["site"] == "site-1")
    assert site0["steps"] == site1["steps"] == 12
    report = (private_run / "audit.md").read_text()
    assert "What it does not cover" in report and "RED FLAG" not in report
    assert (private_run / "roc.png").stat().st_size > 5000


def test_audit_without_a_ledger_names_the_missing_file(private_run, tmp_path, capsys):
    code = main(["audit", "--run", str(private_run), "--state-dir", str(tmp_path),
                 "--out", str(tmp_path / "report")])
    assert code == 2
    error = capsys.readouterr().err
    assert "site-0" in error and "privacy_ledger.json" in error


def test_report_shouts_when_an_attack_beats_the_guarantee(audited_run):
    result = json.loads((audited_run[0] / "audit.json").read_text())
    result.update(epsilon_lower_bound=result["epsilon"] + 1, red_flag=True)
    assert "RED FLAG" in report_markdown(result, RunConfig())


def test_report_lists_one_off_releases(audited_run):
    private_run = audited_run[0]
    result = json.loads((private_run / "audit.json").read_text())
    # mean-embedding is on by default: each site's one release, in its first round
    assert all(s["releases"] == [{"mechanism": "mean-embedding", "round": 1,
                                  "noise_multiplier": 5.0}] for s in result["sites"])
    report = (private_run / "audit.md").read_text()
    assert "site-1: mean-embedding in round 1 (noise multiplier 5)" in report
    for site in result["sites"]:
        site["releases"] = []
    assert "One-off Gaussian releases" not in report_markdown(result, RunConfig())
