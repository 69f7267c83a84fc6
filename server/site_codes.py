"""Site codes of a site-conditional generator: each row belongs to one site.

A site trains only its own code (the row of ``generator.site_embedding`` at its node-config
``site-code``, by default its partition-id), so averaging would shrink every code's update by
the site's share of the examples, and a median or trimmed mean would never move it at all.
The server therefore takes each row from the site that owns it, as that site sent it (after
aggregation and any server optimiser step), and records the site's training-set size in
``generator.site_examples``: the released generator draws sites in that proportion.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

from medgan_models.protocol import SITE_CODE
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


def take_site_rows(arrays: ArrayRecord, replies: list[SiteReply], num_sites: int
                   ) -> ArrayRecord:
    """``arrays`` with each trained site's own code row and training-set size replaced."""
    owned = owners(replies, num_sites)
    embedding = arrays[EMBEDDING_KEY].numpy().copy()
    examples = arrays[EXAMPLES_KEY].numpy().copy()
    for code, reply in owned.items():
        embedding[code] = reply.weights[EMBEDDING_KEY][code]
        examples[code] = reply.num_examples
    out = dict(arrays.items())
    out[EMBEDDING_KEY] = Array(np.ascontiguousarray(embedding))
    out[EXAMPLES_KEY] = Array(np.ascontiguousarray(examples))
    return ArrayRecord(out)
