"""A site's privacy ledger: every DP-SGD step it ever took, so epsilon covers the WHOLE run.

Flower's Opacus example builds a new PrivacyEngine each round and so reports a per-round
epsilon. Here each round appends (round, noise multiplier, sample rate, steps) to a ledger
that lives in the node's ``context.state`` *and* in a JSON file on the site's own disk, so a
restarted process, a resumed run or a re-joining site continues the count, never restarts it.
Epsilon is computed by composing the whole history with an Opacus accountant (PRV or RDP).
Besides DP-SGD rounds, the ledger records the site's one-off Gaussian release of its mean
embedding (``mean-embedding``): an entry with sample rate 1 and one step, composed alike.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord
from opacus.accountants import create_accountant

LEDGER_FILE = "privacy_ledger.json"
DP_SGD = "dp-sgd"  # a round's discriminator steps
MEAN_EMBEDDING = "mean-embedding"  # the one Gaussian release of the site's mean embedding
MECHANISMS = (DP_SGD, MEAN_EMBEDDING)


@dataclass(frozen=True)
class LedgerEntry:
    """The DP-SGD steps of one local round (or, with ``mechanism`` "mean-embedding", the
    site's one-off release in that round: sample rate 1, one step)."""

    round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    mechanism: str = DP_SGD


@dataclass
class PrivacyLedger:
    """The ordered DP-SGD history of one site."""

    entries: list[LedgerEntry] = field(default_factory=list)

    @property
    def training_entries(self) -> list[LedgerEntry]:
        """The DP-SGD rounds (not the mean-embedding release)."""
        return [e for e in self.entries if e.mechanism == DP_SGD]

    @property
    def total_steps(self) -> int:
        """DP-SGD steps taken so far."""
        return sum(e.steps for e in self.training_entries)

    @property
    def rounds(self) -> list[int]:
        """The rounds in which this site trained."""
        return [e.round for e in self.training_entries]

    def add(self, entry: LedgerEntry) -> None:
        """Record one round's steps (a zero-step round records nothing)."""
        if entry.steps > 0:
            self.entries.append(entry)

    def accountant_history(self) -> list[tuple[float, float, int]]:
        """(noise multiplier, sample rate, steps) runs, merged as Opacus' own accountant does."""
        return list(merged_history(tuple((e.noise_multiplier, e.sample_rate, e.steps)
                                         for e in self.entries)))

    def epsilon(self, delta: float, accountant: str = "prv") -> float:
        """Epsilon of the whole history at ``delta`` (0 before any step)."""
        history = self.accountant_history()
        if not history:
            return 0.0
        if any(sigma <= 0 for sigma, _, _ in history):
            return float("inf")  # a non-private step: no finite guarantee
        return composed_epsilon(tuple(history), delta, accountant)

    # --- persistence -----------------------------------------------------------------------

    def to_config_record(self) -> ConfigRecord:
        """Columns of plain lists, as Flower's ConfigRecord (``context.state``) can hold."""
        return ConfigRecord({
            "round": [e.round for e in self.entries],
            "noise-multiplier": [float(e.noise_multiplier) for e in self.entries],
            "sample-rate": [float(e.sample_rate) for e in self.entries],
            "steps": [e.steps for e in self.entries],
            "mechanism": [e.mechanism for e in self.entries],
        })

    @classmethod
    def from_config_record(cls, record: ConfigRecord) -> PrivacyLedger:
        """Inverse of :meth:`to_config_record` (records written before the mechanism column
        hold DP-SGD rounds only)."""
        mechanisms = record.get("mechanism", [DP_SGD] * len(record["round"]))
        columns = zip(record["round"], record["noise-multiplier"], record["sample-rate"],
                      record["steps"], mechanisms, strict=True)
        return cls([LedgerEntry(int(r), float(s), float(q), int(n), str(m))
                    for r, s, q, n, m in columns])

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename): a crash never leaves a half-written ledger."""
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"version": 1, "entries": [asdict(e) for e in self.entries]}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ledger-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> PrivacyLedger:
        """Read a ledger file; a missing file is an empty ledger, a corrupt one an error."""
        if not path.exists():
            return cls()
        try:
            payload = json.loads(path.read_text())
            entries = [LedgerEntry(**e) for e in payload["entries"]]
            unknown = {e.mechanism for e in entries} - set(MECHANISMS)
            if unknown:
                raise ValueError(f"unknown mechanism(s) {sorted(unknown)}")
            return cls(entries)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"privacy ledger {path} is corrupt ({error}); refusing to restart the count at 0"
            ) from None


def merged_history(history: tuple[tuple[float, float, int], ...]
                   ) -> tuple[tuple[float, float, int], ...]:
    """Consecutive (noise multiplier, sample rate, steps) entries of the same noise and rate
    as one: the accountants' cost grows with the entries, not the steps."""
    merged: list[tuple[float, float, int]] = []
    for sigma, q, steps in history:
        if merged and merged[-1][:2] == (sigma, q):
            merged[-1] = (sigma, q, merged[-1][2] + steps)
        else:
            merged.append((sigma, q, steps))
    return tuple(merged)


@lru_cache(maxsize=256)
def composed_epsilon(history: tuple[tuple[float, float, int], ...], delta: float,
                      accountant: str) -> float:
    """A pure function of the history, cached: a PRV composition takes ~0.5 s, and the virtual
    hospitals of a simulation (one worker process serving many) share histories."""
    composed = create_accountant(mechanism=accountant)
    composed.history = list(history)
    with quiet_accounting():
        epsilon = float(composed.get_epsilon(delta=delta))
    return epsilon if math.isfinite(epsilon) else float("inf")  # no usable bound


@contextmanager
def quiet_accounting() -> Iterator[None]:
    """Silence the accountants' numeric chatter (RDP's 'optimal order' hint, PRV overflows)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.filterwarnings("ignore", message="Optimal order")
        yield


def most_complete(*ledgers: PrivacyLedger) -> PrivacyLedger:
    """The ledger that has recorded the most steps (conservative when copies disagree)."""
    return max(ledgers, key=lambda ledger: (ledger.total_steps, len(ledger.entries)))
