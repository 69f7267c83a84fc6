"""The audit's pictures and words: ``roc.png`` and a one-page ``audit.md``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from audit.roc import AttackOutcome, roc_auc, roc_curve
from medgan_models.config import RunConfig

ROC_FILE = "roc.png"
REPORT_FILE = "audit.md"


def write_report(result: dict[str, Any], outcomes: list[AttackOutcome], config: RunConfig,
                 out_dir: Path) -> None:
    """Write ``roc.png`` and ``audit.md`` beside ``audit.json``."""
    plot_roc(outcomes, result["epsilon"], result["delta"], out_dir / ROC_FILE)
    (out_dir / REPORT_FILE).write_text(report_markdown(result, config))


def plot_roc(outcomes: list[AttackOutcome], epsilon: float, delta: float, path: Path) -> Path:
    """Each attack's ROC (linear and log-log) with the most any attack may reach under the
    accountant's (epsilon, delta): TPR <= e^eps * FPR + delta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    grid = np.logspace(-4, 0, 200)
    for ax, log in zip(axes, (False, True)):
        for outcome in outcomes:
            fpr, tpr = roc_curve(outcome.member_scores, outcome.nonmember_scores)
            auc = roc_auc(outcome.member_scores, outcome.nonmember_scores)
            ax.plot(fpr, tpr, label=f"{outcome.name} (AUC {auc:.3f})", drawstyle="steps-post")
        ax.plot(grid, grid, ":", color="grey", label="chance")
        if math.isfinite(epsilon):
            bound = np.minimum(1.0, math.exp(epsilon) * grid + delta)
            ax.plot(grid, bound, "--", color="red", label=f"DP limit at eps {epsilon:.2f}")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(1e-3, 1)
            ax.set_ylim(1e-3, 1.02)
        else:
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
        ax.set_xlabel("false positive rate (non-members called members)")
        ax.set_ylabel("true positive rate (members found)")
        ax.set_title("membership inference ROC" + (" (log-log)" if log else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "unbounded"
    return f"{value:.{digits}f}"


def not_covered(config: RunConfig) -> list[str]:
    """What the (epsilon, delta) guarantee does NOT protect, for this run's settings."""
    items = [
        "**Patients, not images.** A record is one image. A patient with k images in a site's "
        "data is protected only at about k x epsilon (group privacy).",
        "**Taking part.** That a hospital took part, and how many images it holds "
        "(`num-examples` is sent each round), are not protected.",
        "**Evaluation numbers.** Each evaluated round, sites send quality metrics computed on "
        "their real images (precision/recall/density/coverage, classifier accuracies) without "
        "noise.",
        "**Hyper-parameter search.** Trying several runs on the same data and keeping the best "
        "spends more privacy than one run's epsilon.",
    ]
    if config.fid_stats_noise <= 0:
        items.insert(2, "**Feature statistics.** For FID/FRD each site sends the exact mean and "
                        "covariance of its real images' features (set `fid-stats-noise` to "
                        "privatise them; they then spend their own epsilon).")
    else:
        items.insert(2, "**Feature statistics.** The real-image feature statistics sent for "
                        f"FID/FRD are noised at their own epsilon {config.fid_stats_noise:g}, "
                        "which adds to each site's total (basic composition).")
    return items


def report_markdown(result: dict[str, Any], config: RunConfig) -> str:
    """A one-page report for a privacy officer."""
    eps, lower, delta = result["epsilon"], result["epsilon_lower_bound"], result["delta"]
    lines = [f"# Privacy audit: {result['run']}", "",
             f"Checkpoint `{result['checkpoint']}` (round {result['round']}).", ""]
    if lower > eps:
        lines += ["> **RED FLAG: an attack showed MORE leakage than the guarantee allows** "
                  f"(empirical epsilon >= {_fmt(lower)} > accountant's {_fmt(eps)}). "
                  "This means a bug in training or accounting. Do not release this model.", ""]
    if not result["accounting_agrees"]:
        lines += ["> **RED FLAG: the two accountants disagree** on at least one site (see the "
                  "table). Do not rely on the reported epsilon until this is explained.", ""]
    if not result["red_flag"]:
        lines += ["**Verdict: consistent.** The attacks found no more leakage than the "
                  "guarantee allows, and two independent accountants agree.", ""]
    lines += [
        "| | epsilon | delta |", "|---|---|---|",
        f"| Guarantee (accountant, {result['accountant'].upper()}) | **{_fmt(eps)}** | {delta:g} |",
        f"| Cross-check (PLD, dp-accounting) | {_fmt(result['epsilon_crosscheck'])} | {delta:g} |",
        f"| Empirical lower bound (best attack, 95% confidence) | **{_fmt(lower)}** | {delta:g} |",
        "",
        "## What the guarantee means",
        "",
        f"For any one image in any hospital's training data, the released generator and "
        f"discriminator are almost equally likely to have come out of training with or without "
        f"that image: the odds of any outcome change by at most a factor e^{_fmt(eps, 2)} = "
        f"{_fmt(math.exp(min(eps, 700)), 1) if math.isfinite(eps) else 'unbounded'}, "
        f"except with probability {delta:g}. Each hospital's "
        "images are only in its own training (parallel composition), so the model's guarantee "
        "is the largest site epsilon below. Synthetic images drawn from the generator are "
        "post-processing and carry the same guarantee.",
        "",
        "The empirical lower bound is what the attacks below PROVE is leaked (at 95% "
        "confidence). It is normal for it to be far below the guarantee: the guarantee holds "
        "for the worst case, the attacks are specific. It must never exceed the guarantee.",
        "",
        "## What it does not cover", "",
        *[f"- {item}" for item in not_covered(config)],
        "",
        "## Accounting per site", "",
        "| site | rounds | steps | noise multiplier | sample rate | clip norm | epsilon "
        f"({result['accountant'].upper()}) | epsilon (PLD) | agree |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["sites"]:
        sigmas = ", ".join(f"{v:.3f}" for v in s["noise_multipliers"]) or "-"
        rates = ", ".join(f"{v:.4f}" for v in s["sample_rates"]) or "-"
        lines.append(f"| {s['site']} | {s['rounds_trained']} | {s['steps']} | {sigmas} | "
                     f"{rates} | {s['max_grad_norm']:g} | {_fmt(s['epsilon'])} | "
                     f"{_fmt(s['epsilon_crosscheck'])} | {'yes' if s['agrees'] else '**NO**'} |")
    releases = [f"{s['site']}: {r['mechanism']} in round {r['round']} (noise multiplier "
                f"{r['noise_multiplier']:g})" for s in result["sites"] for r in s.get("releases", [])]
    if releases:
        lines += ["", "One-off Gaussian releases, composed into each epsilon above: "
                  + "; ".join(releases) + "."]
    lines += ["", "## Membership-inference attacks", "",
              "Members: images a site trained on. Non-members: its held-out images (same "
              "scanner, never trained on). AUC 0.5 is chance.", "",
              "| attack | queries (members / non-members) | AUC | TPR at FPR 1% | "
              "TPR at FPR 0.1% | epsilon lower bound |", "|---|---|---|---|---|---|"]
    for a in result["attacks"]:
        lines.append(f"| {a['name']}: {a['description']} | {a['members']} / {a['nonmembers']} | "
                     f"{a['auc']:.3f} | {a['tpr_at_fpr_0.01']:.3f} | {a['tpr_at_fpr_0.001']:.3f} | "
                     f"{_fmt(a['epsilon_lower_bound'])} |")
    resolution = max(a["fpr_resolution"] for a in result["attacks"])
    lines += ["", f"With this many non-members an FPR below {resolution:.4f} cannot be resolved; "
              "the TPR quoted there is the TPR at FPR 0.", "",
              f"![ROC curves]({ROC_FILE})", "",
              "The red dashed line is the most any attack can reach under the guarantee "
              "(TPR <= e^eps FPR + delta); every curve must stay below it.", ""]
    canary = result.get("canary_audit")
    lines += ["## One-run canary audit", ""]
    if canary:
        lines += [f"{canary['canaries']} canary images were drawn; each was added to site-0's "
                  f"training data with probability 1/2 ({canary['included']} were). After "
                  f"training, the {canary['attack']} attack guessed in/out for "
                  f"{canary['guesses']} of them and was right {canary['correct']} times: "
                  f"epsilon >= {_fmt(canary['epsilon_lower_bound'])} at "
                  f"{canary['confidence']:.0%} confidence (Steinke, Nasr & Jagielski 2023).", ""]
    else:
        lines += ["This run had no canaries. `medgan simulate --canaries 200` adds them; "
                  "the audit then bounds epsilon from one training run.", ""]
    lines += ["## Method", "",
              "- Accounting: each site's ledger (every DP-SGD step it took) composed again by the "
              "training accountant and by Google's PLD accountant; they must agree within 5%.",
              "- Empirical bound: for every threshold, Clopper-Pearson 95% intervals on TPR and "
              "FPR, eps >= max{ ln[(TPR_lo - delta)/FPR_hi], ln[(1 - FPR_hi - delta)/(1 - TPR_lo)] "
              "} (the best threshold is chosen on the same data: slightly optimistic).",
              "- GAN-Leaks (Chen et al., CCS 2020), full black box; LOGAN (Hayes et al., "
              "PoPETs 2019), white box.", ""]
    return "\n".join(lines)
