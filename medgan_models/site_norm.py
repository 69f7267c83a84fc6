"""Batch normalisation per site for a site-conditional generator (``site-batchnorm``).

FedBN (Li et al., ICLR 2021) keeps each client's BatchNorm layers local for data whose sites
differ in their features (here: one scanner per hospital). In the generator a shared
BatchNorm also undoes most of a site code's effect: every layer re-centres and re-scales
each channel over a batch that holds one site's images only, so whatever brightness,
contrast or grain the code asked for is normalised away, and the running statistics used
when sampling are the federation's average. :class:`SiteBatchNorm2d` keeps a scale, a shift
and running statistics per site: row ``s`` of each is trained by site ``s`` alone and taken
from that site by the server (``Generator.site_owned``), like the site's code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SiteBatchNorm2d(nn.Module):
    """BatchNorm2d with one (scale, shift, running mean, running variance) row per site.

    ``forward(x, sites)`` normalises each image with its own site's row: in training mode
    with the batch statistics of that site's images in the batch (updating that site's
    running statistics only), in evaluation mode with that site's running statistics.
    """

    def __init__(self, channels: int, num_sites: int, eps: float = 1e-5,
                 momentum: float = 0.1) -> None:
        super().__init__()
        if num_sites < 1:
            raise ValueError(f"num_sites must be >= 1, got {num_sites}")
        self.channels, self.num_sites, self.eps, self.momentum = channels, num_sites, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_sites, channels))
        self.bias = nn.Parameter(torch.zeros(num_sites, channels))
        self.register_buffer("running_mean", torch.zeros(num_sites, channels))
        self.register_buffer("running_var", torch.ones(num_sites, channels))

    def forward(self, x: torch.Tensor, sites: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W); ``sites`` (N,) holds each image's site index."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected (N, {self.channels}, H, W), got {tuple(x.shape)}")
        sites = sites.to(x.device).long()
        if not self.training:
            mean, var = self.running_mean[sites], self.running_var[sites]
            scale = self.weight[sites] * torch.rsqrt(var + self.eps)
            shift = self.bias[sites] - mean * scale
            return x * scale[:, :, None, None] + shift[:, :, None, None]
        present = torch.unique(sites)
        if present.numel() == 1:  # a site's own training batch: one site
            return self._normalise(x, int(present))
        out = torch.zeros_like(x)
        for site in present.tolist():
            rows = (sites == site).nonzero(as_tuple=True)[0]
            out = out.index_copy(0, rows, self._normalise(x[rows], site))
        return out

    def _normalise(self, x: torch.Tensor, site: int) -> torch.Tensor:
        """Training-mode batch norm of one site's images; updates that site's running row."""
        return F.batch_norm(x, self.running_mean[site], self.running_var[site],
                            self.weight[site], self.bias[site], True, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.channels}, sites={self.num_sites}, eps={self.eps}, momentum={self.momentum}"
