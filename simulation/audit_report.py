"""``medgan audit``: run the privacy audit of a run folder and print its verdict."""

from __future__ import annotations

import argparse
import sys

from audit.report import REPORT_FILE, ROC_FILE
from audit.run_audit import AUDIT_FILE, run_audit

RED_FLAG_EXIT = 3  # a distinct exit status, so scripts can stop a release on it


def _eps(value: float) -> str:
    return f"{value:.3f}" if value != float("inf") else "unbounded"


def run_audit_command(args: argparse.Namespace) -> int:
    """Audit ``args.run``; exit status 0, or :data:`RED_FLAG_EXIT` on a red flag."""
    result = run_audit(args.run, args.out, args.checkpoint, args.state_dir, args.device,
                       args.queries_per_site, args.samples_per_class, args.seed,
                       progress=lambda line: print(line, flush=True))
    print(f"epsilon (accountant, {result['accountant']}): {_eps(result['epsilon'])}   "
          f"cross-check (PLD): {_eps(result['epsilon_crosscheck'])}   delta {result['delta']:g}")
    for attack in result["attacks"]:
        print(f"  {attack['name']:10s} AUC {attack['auc']:.3f}  TPR@FPR1% "
              f"{attack['tpr_at_fpr_0.01']:.3f}  epsilon >= {_eps(attack['epsilon_lower_bound'])}")
    if result["canary_audit"]:
        canary = result["canary_audit"]
        print(f"  canaries   {canary['correct']}/{canary['guesses']} right guesses  "
              f"epsilon >= {_eps(canary['epsilon_lower_bound'])}")
    print(f"empirical epsilon lower bound: {_eps(result['epsilon_lower_bound'])}")
    out = args.out or args.run
    print(f"report: {out / REPORT_FILE}  (numbers: {out / AUDIT_FILE}, ROC: {out / ROC_FILE})")
    if result["red_flag"]:
        print("medgan: RED FLAG: the audit contradicts the privacy guarantee (see the report); "
              "do not release this model", file=sys.stderr)
        return RED_FLAG_EXIT
    return 0
