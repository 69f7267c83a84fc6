"""Who is a member: the images each site trained on, against images it never saw.

For every site the auditor rebuilds exactly what training used (same data source, partition,
held-out split and seed). Non-members are half of the site's held-out images (same scanner and
distribution as its members, never trained on); the other half is the reference set that
calibrates GAN-Leaks. Members are a random subset of the training images of the same size, so
each site contributes balanced classes of queries. Canaries are audited separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from client.holdout import split_holdout
from client.site import load_data, site_config
from medgan_models.config import RunConfig


@dataclass
class MembershipSets:
    """Query images (N, C, S, S) in [-1, 1] with labels, pooled over sites."""

    members: np.ndarray
    member_labels: np.ndarray
    nonmembers: np.ndarray
    nonmember_labels: np.ndarray
    reference: np.ndarray
    reference_labels: np.ndarray
    per_site: dict[str, dict[str, int]] = field(default_factory=dict)


def membership_sets(config: RunConfig, num_sites: int, max_per_site: int = 500,
                    seed: int = 0) -> MembershipSets:
    """Balanced member / non-member queries and a reference set, from every site's own data."""
    if config.holdout_fraction <= 0:
        raise ValueError("the run kept no held-out images (holdout-fraction = 0): there are no "
                         "non-members to audit against; train with holdout-fraction > 0")
    rng = np.random.default_rng([seed, 0xA0D1])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("m", "ml", "n", "nl", "r", "rl")}
    per_site = {}
    for partition in range(num_sites):
        site_cfg, site = site_config(config.to_mapping(),
                                     {"partition-id": partition, "num-partitions": num_sites})
        train, holdout = split_holdout(load_data(site_cfg, site), config.holdout_fraction,
                                       config.seed)
        order = rng.permutation(len(holdout))
        half = len(order) // 2
        queries = min(half, max_per_site, len(train))
        if queries == 0:
            continue  # a site too small to hold anything out
        nonmember, reference = order[:queries], order[half:]
        member = rng.choice(len(train), size=queries, replace=False)
        for key, images, labels, index in (("m", train.images, train.labels, member),
                                           ("n", holdout.images, holdout.labels, nonmember),
                                           ("r", holdout.images, holdout.labels, reference)):
            parts[key].append(images[index])
            parts[key + "l"].append(labels[index])
        per_site[site.site_id] = {"members": int(queries), "nonmembers": int(queries),
                                  "reference": int(len(reference))}
    if not per_site:
        raise ValueError("no site held out enough images to audit membership; raise "
                         "holdout-fraction or samples-per-site")
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    return MembershipSets(joined["m"], joined["ml"], joined["n"], joined["nl"], joined["r"],
                          joined["rl"], per_site)
