"""Checkpoints: one file per round that carries its own config, written atomically."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from medgan_models.state_files import torch_save_atomically

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"round_(\d+)\.pt$")


@dataclass
class Checkpoint:
    """Both models (no optimizer state), where the run stands, and how it was configured."""

    round: int
    weights: dict[str, torch.Tensor] = field(repr=False)
    run_config: dict[str, Any]
    seed: int
    site_epsilons: dict[str, float] = field(default_factory=dict)
    excluded_sites: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # generator.* tensors averaged over rounds (run config generator-ema > 0), else empty
    generator_ema: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    # the server optimiser's state (e.g. FedAdam's moments), for an exact resume
    server_state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def release_weights(self) -> dict[str, torch.Tensor]:
        """What the run releases: the weights, with the averaged generator when there is one."""
        return {**self.weights, **self.generator_ema}


def checkpoint_path(run_dir: Path, server_round: int) -> Path:
    """``<run>/checkpoints/round_NNN.pt``."""
    return run_dir / CHECKPOINT_DIR / f"round_{server_round:03d}.pt"


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> Path:
    """Write the round's checkpoint via a temp file + rename: never a half-written file."""
    path = checkpoint_path(run_dir, checkpoint.round)
    torch_save_atomically(asdict(checkpoint), path)
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint file (tensors and plain values only: safe ``weights_only`` load)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        # checkpoints from before the key existed were made with transposed convolutions
        payload["run_config"].setdefault("generator-upsampling", "transpose")
        payload["run_config"].setdefault("site-output-layer", False)  # ... one shared last block
        payload["run_config"].setdefault("fake-labels", "uniform")  # ... uniform fake classes
        return Checkpoint(**payload)
    except (OSError, RuntimeError, TypeError, KeyError) as error:
        raise ValueError(f"cannot read checkpoint {path}: {error}") from None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The highest-round checkpoint of a run folder, or None."""
    found = [(int(m.group(1)), p) for p in (run_dir / CHECKPOINT_DIR).glob("round_*.pt")
             if (m := _NAME.search(p.name))]
    return max(found)[1] if found else None
