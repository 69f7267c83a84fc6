"""One flat state dict for the generator + discriminator pair: what travels each round."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

GENERATOR_PREFIX = "generator."
DISCRIMINATOR_PREFIX = "discriminator."


def pair_state(generator: nn.Module, discriminator: nn.Module) -> dict[str, torch.Tensor]:
    """Both models' tensors under 'generator.' / 'discriminator.' prefixes (CPU, detached)."""
    state = {GENERATOR_PREFIX + k: v.detach().cpu() for k, v in generator.state_dict().items()}
    state.update(
        {DISCRIMINATOR_PREFIX + k: v.detach().cpu()
         for k, v in discriminator.state_dict().items()}
    )
    return state


def load_pair_state(generator: nn.Module, discriminator: nn.Module,
                    state: dict[str, torch.Tensor | np.ndarray]) -> None:
    """Load a state made by :func:`pair_state`; dtypes follow the models (e.g. int buffers)."""
    split: dict[str, dict[str, torch.Tensor]] = {GENERATOR_PREFIX: {}, DISCRIMINATOR_PREFIX: {}}
    for key, value in state.items():
        for prefix, part in split.items():
            if key.startswith(prefix):
                part[key[len(prefix):]] = torch.as_tensor(value)
                break
        else:
            raise KeyError(f"unexpected weight '{key}': not a generator or discriminator tensor")
    for prefix, module in ((GENERATOR_PREFIX, generator), (DISCRIMINATOR_PREFIX, discriminator)):
        own = module.state_dict()
        cast = {k: v.to(own[k].dtype) if k in own else v for k, v in split[prefix].items()}
        module.load_state_dict(cast, strict=True)


def generator_state(state: dict[str, torch.Tensor | np.ndarray]) -> dict[str, torch.Tensor]:
    """Only the generator's tensors of a pair state, prefix removed."""
    n = len(GENERATOR_PREFIX)
    return {k[n:]: torch.as_tensor(v) for k, v in state.items() if k.startswith(GENERATOR_PREFIX)}
