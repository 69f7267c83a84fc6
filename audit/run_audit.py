"""``medgan audit``: the accountant's epsilon and what attacks show, for one trained run.

1. Accounting: every site's ledger composed by the training accountant and by PLD.
2. Membership inference on the released checkpoint: GAN-Leaks (black box, calibrated) and
   LOGAN (white box), members = training images, non-members = held-out images.
3. If the run has canaries, the one-run audit on them.
4. ``audit.json``, ``roc.png`` and ``audit.md`` in the output folder (default: the run folder).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audit.accounting import read_ledgers, site_accounting
from audit.attacks import gan_leaks_scores, generated_pool, logan_scores
from audit.canary_audit import one_run_audit
from audit.membership_sets import membership_sets
from audit.report import write_report
from audit.roc import AttackOutcome
from client.dp_training import resolve_device
from client.site import run_canaries
from medgan_models.config import RunConfig
from medgan_models.networks import build_models
from medgan_models.weights import load_pair_state
from server.run_records import open_run

AUDIT_FILE = "audit.json"


def audit_state_dir(run_dir: Path, config: RunConfig) -> Path:
    """Where the sites' ledgers are: the run's ``state-dir`` or ``<run>/site-state``."""
    if config.state_dir and Path(config.state_dir).exists():
        return Path(config.state_dir)
    return run_dir / "site-state"


def run_audit(run_dir: Path, out_dir: Path | None = None, checkpoint: Path | None = None,
              state_dir: Path | None = None, device: str = "auto", queries_per_site: int = 500,
              samples_per_class: int = 2000, seed: int = 0,
              progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Audit a finished (or stopped) run; returns what ``audit.json`` holds."""
    path, ckpt, config, site_ids = open_run(run_dir, checkpoint)
    out_dir = out_dir or run_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    progress(f"audit of {path} (round {ckpt.round}), {len(site_ids)} sites")
    progress("  [1/3] accounting: composing each site's ledger with "
             f"{config.accountant.upper()} and PLD")
    ledgers = read_ledgers(state_dir or audit_state_dir(run_dir, config), site_ids)
    accounts = [site_accounting(s, ledgers[s], config.delta, config.accountant)
                for s in site_ids]

    generator, discriminator = build_models(config)
    load_pair_state(generator, discriminator, ckpt.release_weights)
    torch_device = resolve_device(device)
    num_classes = config.num_classes if config.conditional else 0
    progress(f"  [2/3] membership inference: {samples_per_class} generated samples per class, "
             f"up to {queries_per_site} members and non-members per site")
    sets = membership_sets(config, len(site_ids), queries_per_site, seed)
    pool = generated_pool(generator, num_classes, samples_per_class, seed, torch_device)

    def attacks_on(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "gan-leaks": gan_leaks_scores(images, labels, pool, sets.reference,
                                          sets.reference_labels),
            "logan": logan_scores(discriminator, images, labels, torch_device),
        }

    member_scores = attacks_on(sets.members, sets.member_labels)
    nonmember_scores = attacks_on(sets.nonmembers, sets.nonmember_labels)
    descriptions = {
        "gan-leaks": "black box: distance to the nearest generated sample, calibrated",
        "logan": "white box: the released discriminator's score",
    }
    outcomes = [AttackOutcome(name, descriptions[name], member_scores[name],
                              nonmember_scores[name]) for name in descriptions]
    attacks = [o.summary(config.delta) for o in outcomes]

    canary = None
    if config.canaries:
        progress(f"  [3/3] one-run audit on {config.canaries} canaries")
        canaries = run_canaries(config)
        scores = attacks_on(canaries.images, canaries.labels)
        runs = {name: one_run_audit(s, canaries.included) for name, s in scores.items()}
        best = max(runs, key=lambda name: runs[name]["epsilon_lower_bound"])
        canary = {**runs[best], "attack": best, "by_attack": runs}
    else:
        progress("  [3/3] no canaries in this run (medgan simulate --canaries M adds them)")

    result = _result(config, ckpt.round, path, accounts, attacks, canary, sets.per_site)
    (out_dir / AUDIT_FILE).write_text(json.dumps(_plain(result), indent=2) + "\n")
    write_report(result, outcomes, config, out_dir)
    return result


def _result(config: RunConfig, round_: int, path: Path, accounts: list, attacks: list[dict],
            canary: dict | None, per_site: dict) -> dict[str, Any]:
    sites = [a.as_dict(config.max_grad_norm) for a in accounts]
    epsilon = max(s["epsilon"] for s in sites)
    bounds = [a["epsilon_lower_bound"] for a in attacks]
    if canary:
        bounds.append(canary["epsilon_lower_bound"])
    lower = max(bounds)
    return {
        "run": str(path.parent.parent),
        "checkpoint": os.fspath(path),
        "round": round_,
        "delta": config.delta,
        "accountant": config.accountant,
        # the released model: sites hold disjoint records (parallel composition), so a record's
        # guarantee is its own site's epsilon and the model's is the largest of them
        "epsilon": epsilon,
        "epsilon_crosscheck": max(s["epsilon_crosscheck"] for s in sites),
        "accounting_agrees": all(s["agrees"] for s in sites),
        "sites": sites,
        "attacks": attacks,
        "canary_audit": canary,
        "membership_queries": per_site,
        "epsilon_lower_bound": lower,
        "red_flag": bool(lower > epsilon) or not all(s["agrees"] for s in sites),
    }


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, infinities (no finite bound) as null."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
