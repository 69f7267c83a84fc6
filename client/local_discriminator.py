"""A site's own discriminator (``local-discriminator``): kept at the site from round to round.

With the option on, a site trains the discriminator it kept from its previous round instead of
the federation's average, so each site's critic stays fitted to its own scanner and labels
(several discriminators, one generator: MD-GAN, Hardy et al., IPDPS 2019). The generator is
still averaged. A site takes the federation's discriminator when it kept none from the round
just before (its first round, a round after one it missed, or a state folder that holds another
run's: the file records its round). The kept weights are DP-SGD output, like everything the site sends, so keeping them costs no
privacy; they stay in the site's state folder, beside its privacy ledger.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from medgan_models.state_files import torch_save_atomically

DISCRIMINATOR_FILE = "discriminator.pt"


def local_discriminator_path(state_dir: Path) -> Path:
    """Where a site keeps its discriminator (its state folder, beside the ledger)."""
    return state_dir / DISCRIMINATOR_FILE


def restore_discriminator(discriminator: nn.Module, path: Path, server_round: int) -> bool:
    """Load the weights kept in round ``server_round - 1`` into ``discriminator``; False when
    there are none from that round. A file that cannot be read, or that does not fit the model,
    is an error naming it."""
    if not path.exists():
        return False
    try:
        kept = torch.load(path, weights_only=True)
        if int(kept["round"]) != server_round - 1:
            return False
        discriminator.load_state_dict(kept["weights"], strict=True)
    except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(f"kept discriminator {path} is unreadable or does not fit this run's "
                         f"model ({str(error)[:200]}); delete it to start this site from the "
                         "federation's discriminator") from None
    return True


def keep_discriminator(discriminator: nn.Module, path: Path, server_round: int) -> None:
    """Save the site's discriminator after ``server_round``, atomically (temp file + rename)."""
    weights = {k: v.detach().cpu() for k, v in discriminator.state_dict().items()}
    torch_save_atomically({"round": server_round, "weights": weights}, path)
