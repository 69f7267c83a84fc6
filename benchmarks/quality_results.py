"""The quality benchmark's results: one setting's runs over seeds combined, the table with
the costs of privacy and federation, and the ``--json`` file (see benchmarks/quality.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("frd", "precision", "recall", "density", "coverage", "tstr_accuracy",
           "trtr_accuracy", "tstr_over_trtr")
# what each run reports beside its metrics: the table's columns, averaged over seeds
COLUMNS = ("rounds", "seconds", "epsilon_max", *METRICS)
NO_PRIVACY_EPSILON = 1e6  # an epsilon above this is a run without privacy noise


def combine_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One setting's runs over several seeds: each metric's mean, its standard deviation under
    ``spread`` (when there are two or more), and the runs themselves under ``per_seed``."""
    if len(rows) == 1:
        return rows[0]
    combined: dict[str, Any] = {"run": ", ".join(r["run"] for r in rows),
                                "samples": ", ".join(r["samples"] for r in rows),
                                "spread": {}, "per_seed": rows}
    for key in COLUMNS:
        values = [r[key] for r in rows if r.get(key) is not None]
        combined[key] = float(np.mean(values)) if values else None
        if len(values) > 1:
            combined["spread"][key] = float(np.std(values, ddof=1))
    combined["missed_rounds"] = sum(r.get("missed_rounds", 0) for r in rows)
    return combined


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _cell(column: str, value: Any) -> str:
    """One table cell; the epsilon of a run without privacy noise reads "none" (its
    accountant's figure, kept in the JSON, is astronomically large)."""
    if column == "epsilon_max" and isinstance(value, float) and value > NO_PRIVACY_EPSILON:
        return f"{'none':>15s}"
    return f"{value:15.3f}" if isinstance(value, float) else f"{value!s:>15s}"


def _versus(a: dict[str, Any], b: dict[str, Any]) -> str:
    """"TSTR/TRTR x vs y, coverage x vs y, recall x vs y" of two runs."""
    return ", ".join(f"{label} {_number(a.get(key))} vs {_number(b.get(key))}" for label, key in
                     (("TSTR/TRTR", "tstr_over_trtr"), ("coverage", "coverage"),
                      ("recall", "recall")))


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """The metrics of each run side by side, then what privacy and federation cost."""
    print(f"{'':16s}" + "".join(f"{c[:14]:>15s}" for c in COLUMNS))
    for name, row in results.items():
        print(f"{name:16s}" + "".join(_cell(c, row[c]) for c in COLUMNS))
    fed, central, open_, central_open, fed_iid = (results.get(k, {}) for k in (
        "federated_dp", "centralized_dp", "nonprivate", "centralized_nonprivate",
        "federated_dp_iid"))
    print(f"cost of privacy: FRD {_ratio(fed.get('frd'), open_.get('frd'))} "
          f"(federated DP / non-private), {_versus(fed, open_)}")
    print(f"cost of federation: FRD {_ratio(fed.get('frd'), central.get('frd'))} "
          f"(federated DP / centralized DP), {_versus(fed, central)}")
    if central_open:
        print(f"cost of privacy, centralized: FRD "
              f"{_ratio(central.get('frd'), central_open.get('frd'))} (centralized DP / "
              f"centralized non-private), coverage {_number(central.get('coverage'))} vs "
              f"{_number(central_open.get('coverage'))}")
    if fed_iid:
        print(f"cost of the sites' differences: FRD {_ratio(fed.get('frd'), fed_iid.get('frd'))} "
              f"(federated DP / the same federation with IID sites), coverage "
              f"{_number(fed.get('coverage'))} vs {_number(fed_iid.get('coverage'))}")
    for name, row in results.items():
        if row.get("spread"):
            print(f"{name}: over {len(row['per_seed'])} seeds, standard deviation " + ", ".join(
                f"{k} {row['spread'][k]:.3f}" for k in METRICS if k in row["spread"]))
    for name, row in results.items():
        print(f"{name}: run folder {row['run']}, sample grid {row['samples']}")
        if row.get("missed_rounds"):
            print(f"WARNING: {name}: {row['missed_rounds']} rounds went without every site "
                  "(see its metrics.jsonl, 'rejected' and 'absent'): not the benchmark's figures")


def combined(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each setting that ran, its runs over the seeds combined (:func:`combine_seeds`)."""
    return {name: combine_seeds(rows) for name, rows in runs.items() if rows}


def report(results: dict[str, dict[str, Any]], json_out: Path | None) -> int:
    """Print the table and write ``json_out`` (where given)."""
    print_table(results)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {json_out}")
    return 0
