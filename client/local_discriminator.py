"""A site's own discriminator (``local-discriminator``): kept at the site from round to round.

With the option on, a site trains the discriminator it kept from its previous round instead of
the federation's average, so each site's critic stays fitted to its own scanner and labels
(several discriminators, one generator: MD-GAN, Hardy et al., IPDPS 2019). The generator is
still averaged. In its first round a site starts from the federation's discriminator. The
kept weights are DP-SGD output, like everything the site sends, so keeping them costs no
privacy; they stay in the site's state folder, beside its privacy ledger.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch
from torch import nn

DISCRIMINATOR_FILE = "discriminator.pt"


def local_discriminator_path(state_dir: Path) -> Path:
    """Where a site keeps its discriminator (its state folder, beside the ledger)."""
    return state_dir / DISCRIMINATOR_FILE


def restore_discriminator(discriminator: nn.Module, path: Path) -> bool:
    """Load the kept weights into ``discriminator``; False when none are kept yet. A file that
    cannot be read, or that does not fit the model, is an error naming it."""
    if not path.exists():
        return False
    try:
        discriminator.load_state_dict(torch.load(path, weights_only=True), strict=True)
    except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(f"kept discriminator {path} is unreadable or does not fit this run's "
                         f"model ({str(error)[:200]}); delete it to start this site from the "
                         "federation's discriminator") from None
    return True


def keep_discriminator(discriminator: nn.Module, path: Path) -> None:
    """Save the site's discriminator atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".discriminator-", suffix=".pt")
    os.close(fd)
    torch.save({k: v.detach().cpu() for k, v in discriminator.state_dict().items()}, tmp)
    os.replace(tmp, path)
