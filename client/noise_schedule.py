"""How much DP noise each round gets, so that the whole run spends ``target-epsilon``.

By default every round uses the same noise multiplier. ``noise-schedule-ratio`` r > 1 spends
the budget unevenly: the R rounds fall into L = min(R, ``NOISE_LEVELS``) equal blocks, and block
k of L gets ``s * r ** ((L - 1 - k) / (L - 1))``, so the first rounds are r times noisier than
the last (coarse structure first, detail when it matters; the idea of decaying-noise schedules
such as Yu et al., 2019, "Differentially Private Model Publishing for Deep Learning"). Steps
rather than a smooth curve, because the PRV accountant's cost grows with the number of distinct
noise levels in a history (~0.1 s each): 160 levels made every site's start-up search and each
round's epsilon take minutes. The scale s is found so that the composed history of all R rounds
spends exactly the target. The sample rate is the site's own, so each site derives its own schedule.
A site's one-off release of its mean embedding (``mean-embedding``) is part of that plan: the
rounds' noise is found for what the budget leaves after it (composed, not subtracted).
"""

from __future__ import annotations

from functools import lru_cache

from opacus.accountants.utils import get_noise_multiplier

from client.embedding_release import release_entry
from client.privacy_ledger import composed_epsilon, merged_history, quiet_accounting
from medgan_models.config import RunConfig

SEARCH_TOLERANCE = 0.005  # relative, on epsilon
NOISE_LEVELS = 8  # distinct noise multipliers of a schedule, at most (see the module's doc)


def sample_rate_for(num_examples: int, batch_size: int) -> float:
    """Poisson sampling rate, exactly as Opacus derives it from the data loader (1/len)."""
    batches = -(-num_examples // batch_size)  # ceil
    return 1.0 / max(batches, 1)


def round_weights(num_rounds: int, ratio: float) -> tuple[float, ...]:
    """Relative noise of rounds 1..R: ``ratio`` for the first block of rounds, 1 for the last,
    geometric in between, in at most ``NOISE_LEVELS`` equal blocks."""
    if num_rounds <= 1 or ratio == 1.0:
        return (1.0,) * max(num_rounds, 1)
    levels = min(num_rounds, NOISE_LEVELS)
    return tuple(ratio ** ((levels - 1 - (t * levels) // num_rounds) / (levels - 1))
                 for t in range(num_rounds))


def planned_releases(config: RunConfig) -> tuple[tuple[float, float, int], ...]:
    """A site's releases besides DP-SGD, as accountant history: the mean embedding's one
    release (its ledger entry) when it is on."""
    if config.mean_embedding <= 0:
        return ()
    entry = release_entry(config, server_round=1)
    return ((entry.noise_multiplier, entry.sample_rate, entry.steps),)


def derive_noise_multiplier(config: RunConfig, num_examples: int, server_round: int = 1
                            ) -> float:
    """The noise multiplier of ``server_round``: the one given, or the one that makes all
    ``num-rounds`` rounds (under the schedule), with the site's one-off releases, spend
    ``target-epsilon``. Rounds past the plan (a resumed run asked for more) keep the last
    round's noise."""
    if config.noise_multiplier > 0:
        return config.noise_multiplier
    q = sample_rate_for(num_examples, config.batch_size)
    weights = round_weights(config.num_rounds, config.noise_schedule_ratio)
    releases = planned_releases(config)
    if len(set(weights)) == 1 and not releases:
        return _noise_for_budget(config.target_epsilon, config.delta, q,
                                 config.num_rounds * config.local_steps, config.accountant)
    scale = _scale_for_budget(config.target_epsilon, config.delta, q, config.local_steps,
                              weights, config.accountant, releases)
    return scale * weights[min(max(server_round, 1), len(weights)) - 1]


@lru_cache(maxsize=16)
def _noise_for_budget(epsilon: float, delta: float, sample_rate: float, steps: int,
                      accountant: str) -> float:
    """Binary search (slow with PRV): cached, since every round of a run asks the same."""
    with quiet_accounting():
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=steps,
                                          accountant=accountant, epsilon_tolerance=0.005))


@lru_cache(maxsize=16)
def _scale_for_budget(epsilon: float, delta: float, sample_rate: float, steps_per_round: int,
                      weights: tuple[float, ...], accountant: str,
                      releases: tuple[tuple[float, float, int], ...] = ()) -> float:
    """The s for which rounds with noise ``s * weights[t]``, with ``releases``, compose to
    ``epsilon`` (at most: the search returns the upper end of its last bracket)."""

    def spent(scale: float) -> float:
        rounds = merged_history(tuple((scale * w, sample_rate, steps_per_round) for w in weights))
        return composed_epsilon(rounds + releases, delta, accountant)

    if releases and composed_epsilon(releases, delta, accountant) >= epsilon:
        raise ValueError(f"the one-off releases alone spend epsilon >= {epsilon}: raise "
                         "mean-embedding-noise or target-epsilon")
    if accountant == "rdp":
        low, high = 0.05, 1.0
    else:  # RDP over-estimates epsilon, so its scale bounds this one from above (and is fast)
        high = _scale_for_budget(epsilon, delta, sample_rate, steps_per_round, weights, "rdp",
                                 releases)
        low = high / 2
    while spent(high) > epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise ValueError(f"no noise reaches epsilon {epsilon} in {len(weights)} rounds")
    while high - low > 1e-4 and spent(high) < epsilon * (1 - SEARCH_TOLERANCE):
        middle = (low + high) / 2
        low, high = (middle, high) if spent(middle) > epsilon else (low, middle)
    return high
