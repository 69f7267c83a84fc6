"""Site codes of a site-conditional generator: each row belongs to one site.

A site trains only its own code (the row of ``generator.site_embedding`` at its node-config
``site-code``, by default its partition-id) and, with ``site-output-layer``, its own slice of
the generator's last block, so averaging would shrink every such update by the site's share of
the examples, and a median or trimmed mean would never move it at all. The server therefore
takes each site's slices (``Generator.site_owned``) from the site that owns them, as that
site sent them (after aggregation and any server optimiser step), and records the site's
images per class in ``generator.site_examples``: the released generator draws each image's
site in proportion to its class's column. A site with a mean embedding reports its per-class
counts as ``class-examples.<c>``: the noisy counts of that release (post-processing of a DP
release, no new privacy cost; the noise's standard deviation is ``mean-embedding-noise`` x 1.4
images). A site without one is counted as its size spread evenly over the classes.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from medgan_models.networks import spread_over_classes
from medgan_models.protocol import SITE_CODE, class_examples
from medgan_models.weights import GENERATOR_PREFIX
from server.reply_validation import SiteReply

EMBEDDING_KEY = GENERATOR_PREFIX + "site_embedding.weight"
EXAMPLES_KEY = GENERATOR_PREFIX + "site_examples"


class SiteCodeConflict(RuntimeError):
    """Two sites claim the same site code, or a code is out of range; the message names them."""


def owners(replies: list[SiteReply], num_sites: int) -> dict[int, SiteReply]:
    """Each site code's reply this round; a missing, duplicate or out-of-range code is an error
    naming the sites (two SuperNodes with the same site-code, say)."""
    owned: dict[int, SiteReply] = {}
    for reply in replies:
        if SITE_CODE not in reply.metrics:
            raise SiteCodeConflict(f"{reply.site_id} sent no site code, but the generator is "
                                   f"site-conditional (num-sites {num_sites})")
        code = int(reply.metrics[SITE_CODE])
        if not 0 <= code < num_sites:
            raise SiteCodeConflict(f"{reply.site_id}: site code {code} is not in "
                                   f"[0, {num_sites}); set its site-code below num-sites")
        if code in owned:
            raise SiteCodeConflict(f"{owned[code].site_id} and {reply.site_id} both have site "
                                   f"code {code}: give each site its own site-code")
        owned[code] = reply
    return owned


def take_site_rows(arrays: ArrayRecord, replies: list[SiteReply], num_sites: int,
                   site_owned: dict[str, tuple[int, int]]) -> ArrayRecord:
    """``arrays`` with each trained site's own slices (``site_owned``, from
    ``Generator.site_owned``: parameter name -> (dimension, slice width)) and images per class
    replaced."""
    owned = owners(replies, num_sites)
    out = dict(arrays.items())
    for name, (dim, width) in site_owned.items():
        key = GENERATOR_PREFIX + name
        merged = np.moveaxis(arrays[key].numpy().copy(), dim, 0)
        for code, reply in owned.items():
            theirs = np.moveaxis(np.asarray(reply.weights[key]), dim, 0)
            merged[code * width:(code + 1) * width] = theirs[code * width:(code + 1) * width]
        out[key] = Array(np.ascontiguousarray(np.moveaxis(merged, 0, dim)))
    examples = arrays[EXAMPLES_KEY].numpy().copy()
    for code, reply in owned.items():
        examples[code] = site_class_examples(reply, examples.shape[1])
    out[EXAMPLES_KEY] = Array(np.ascontiguousarray(examples))
    return ArrayRecord(out)


def site_class_examples(reply: SiteReply, num_classes: int) -> np.ndarray:
    """A site's images per class: its reported ``class-examples.<c>`` (negative noise clipped
    to 0), or its size spread evenly when it reported none."""
    reported = class_examples(reply.metrics, num_classes)
    if reported is None:
        return np.full(num_classes, reply.num_examples / num_classes, dtype=np.float32)
    return np.clip(reported, 0.0, None).astype(np.float32)


def upgrade_site_examples(state: dict[str, torch.Tensor], num_classes: int
                          ) -> dict[str, torch.Tensor]:
    """``state`` (a checkpoint's weights) with an older one-size-per-site ``site_examples``
    spread evenly over ``num_classes`` columns, as the generator now holds it."""
    old = state.get(EXAMPLES_KEY)
    if old is None or old.ndim != 1:
        return state
    return {**state, EXAMPLES_KEY: spread_over_classes(old, max(num_classes, 1))}


def count_site_codes(infos: list[dict], site_ids: list[str]) -> tuple[int, str]:
    """num-sites "auto" from the sites' :func:`client.site.site_info` replies: one code per
    site (the largest of their partition counts and codes + 1) when every site has a code
    from its node config; else 0 (off). Also a line saying what was decided and why."""
    if not infos:
        return 0, "num-sites auto: off (no site answered)"
    unnamed = [s for s, info in zip(site_ids, infos, strict=True) if not info["code-given"]]
    if unnamed:
        return 0, (f"num-sites auto: off ({', '.join(unnamed)} set no site-code or "
                   "partition-id; give each site one for a code per site)")
    count = max([int(i["num-partitions"]) for i in infos]
                + [int(i["site-code"]) + 1 for i in infos])
    if count < 2:
        return 0, "num-sites auto: off (every site has code 0)"
    return count, f"num-sites auto: {count} (a generator code per site)"
