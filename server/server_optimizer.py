"""Server-side optimisers over the sites' aggregate (FedOpt: Reddi et al., ICLR 2021).

The aggregate of a round minus the global model it started from is a "pseudo-gradient";
FedAvgM adds server momentum to it, FedAdam an Adam step. Only floating-point tensors move;
integer buffers (e.g. BatchNorm's step counter) take the aggregate as is. The state lives in
the checkpoint, so a resumed run continues the same trajectory.

Flower ships these as strategies (``FedAvgM``, ``FedAdam``), but a strategy is the whole round;
here they are one step inside ours, after reply validation, exclusion and robust aggregation.
"""

from __future__ import annotations

import numpy as np

from medgan_models.config import RunConfig

State = dict[str, np.ndarray]


class ServerOptimizer:
    """Identity: the next global model is the aggregate (plain FedAvg)."""

    def __init__(self) -> None:
        self.state: dict[str, State] = {}

    def step(self, current: State, aggregate: State) -> State:
        """The next global model from the round's starting model and the sites' aggregate."""
        return aggregate

    def _float_keys(self, current: State, aggregate: State) -> list[str]:
        return [k for k, v in aggregate.items()
                if np.issubdtype(v.dtype, np.floating) and k in current]


class FedAvgM(ServerOptimizer):
    """v <- momentum * v + delta; w <- w + lr * v (Hsu et al., 2019)."""

    def __init__(self, learning_rate: float, momentum: float) -> None:
        super().__init__()
        self.learning_rate, self.momentum = learning_rate, momentum

    def step(self, current: State, aggregate: State) -> State:
        velocity = self.state.setdefault("velocity", {})
        out = dict(aggregate)
        for key in self._float_keys(current, aggregate):
            delta = aggregate[key] - current[key]
            velocity[key] = self.momentum * velocity.get(key, 0.0) + delta
            out[key] = np.asarray(current[key] + self.learning_rate * velocity[key],
                                  dtype=current[key].dtype)
        return out


class FedAdam(ServerOptimizer):
    """Adam on the pseudo-gradient, with adaptivity ``tau`` (Reddi et al., 2021)."""

    def __init__(self, learning_rate: float, beta1: float, beta2: float = 0.99,
                 tau: float = 1e-3) -> None:
        super().__init__()
        self.learning_rate, self.beta1, self.beta2, self.tau = learning_rate, beta1, beta2, tau

    def step(self, current: State, aggregate: State) -> State:
        first = self.state.setdefault("m", {})
        second = self.state.setdefault("v", {})
        out = dict(aggregate)
        for key in self._float_keys(current, aggregate):
            delta = aggregate[key] - current[key]
            first[key] = self.beta1 * first.get(key, 0.0) + (1 - self.beta1) * delta
            second[key] = self.beta2 * second.get(key, 0.0) + (1 - self.beta2) * delta**2
            update = self.learning_rate * first[key] / (np.sqrt(second[key]) + self.tau)
            out[key] = np.asarray(current[key] + update, dtype=current[key].dtype)
        return out


def make_server_optimizer(config: RunConfig) -> ServerOptimizer:
    """The server optimiser a run config names (``none`` = plain aggregate)."""
    if config.server_optimizer == "fedavgm":
        return FedAvgM(config.server_learning_rate, config.server_momentum)
    if config.server_optimizer == "fedadam":
        return FedAdam(config.server_learning_rate, config.server_momentum)
    return ServerOptimizer()


def ema_decay(decay: float, server_round: int) -> float:
    """The decay used at ``server_round`` (1-based): ``decay`` with a warm-up,
    ``min(decay, (1 + t) / (10 + t))`` as in TensorFlow's ExponentialMovingAverage, so that
    early, poor rounds fade out of the average of a short run."""
    return min(decay, (1 + server_round) / (10 + server_round))


def ema_update(average: State | None, weights: State, decay: float) -> State:
    """Exponential moving average over rounds of the floating-point tensors of ``weights``
    (the first call starts the average at ``weights``)."""
    if average is None:
        return {k: v.copy() for k, v in weights.items()}
    out = {}
    for key, value in weights.items():
        if np.issubdtype(value.dtype, np.floating) and key in average:
            out[key] = np.asarray(decay * average[key] + (1 - decay) * value, dtype=value.dtype)
        else:
            out[key] = value.copy()
    return out
