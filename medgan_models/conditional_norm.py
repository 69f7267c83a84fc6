"""Batch normalisation conditioned on each image's site and class (``site-batchnorm``,
``class-batchnorm``).

The generator multiplies its latent code by a site code and a label embedding, and a shared
BatchNorm then re-centres and re-scales every channel over the batch: much of what a code
asked for is normalised away (a code that only scales the latent code is removed entirely),
and the running statistics used when sampling are the average over everything trained.

- Per site, as FedBN (Li et al., ICLR 2021) keeps batch normalisation local for sites whose
  images differ in look (here one scanner per hospital): statistics, scale and shift per site.
  Row ``s`` is trained by site ``s`` alone and taken from that site by the server
  (``Generator.site_owned``), like the site's code.
- Per class, as conditional BatchNorm (de Vries et al., 2017; Miyato & Koyama, 2018): a scale
  and shift per class, shared by the sites, applied after the (shared or per-site) statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d with statistics per site and a scale and shift per (site, class).

    ``weight`` and ``bias`` have shape (sites, classes, channels), ``running_mean`` and
    ``running_var`` (sites, channels); ``sites=1`` or ``classes=1`` shares that axis.
    ``forward(x, sites, labels)`` normalises each image with its own site's statistics (in
    training mode those of its site's images in the batch, updating that site's running row
    only; in evaluation mode that site's running row), then applies its (site, class) scale
    and shift.
    """

    def __init__(self, channels: int, sites: int = 1, classes: int = 1, eps: float = 1e-5,
                 momentum: float = 0.1) -> None:
        super().__init__()
        if sites < 1 or classes < 1:
            raise ValueError(f"sites and classes must be >= 1, got {sites} and {classes}")
        self.channels, self.sites, self.classes = channels, sites, classes
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(sites, classes, channels))
        self.bias = nn.Parameter(torch.zeros(sites, classes, channels))
        self.register_buffer("running_mean", torch.zeros(sites, channels))
        self.register_buffer("running_var", torch.ones(sites, channels))

    def forward(self, x: torch.Tensor, sites: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W); ``sites`` and ``labels`` (N,) are needed when that
        axis has more than one row."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected (N, {self.channels}, H, W), got {tuple(x.shape)}")
        site = self._rows(sites, self.sites, "sites", x)
        label = self._rows(labels, self.classes, "labels", x)
        if self.training:
            x = self._normalise_by_site(x, site)
        else:
            x = (x - self.running_mean[site][:, :, None, None]) * torch.rsqrt(
                self.running_var[site] + self.eps)[:, :, None, None]
        scale, shift = self.weight[site, label], self.bias[site, label]
        return x * scale[:, :, None, None] + shift[:, :, None, None]

    @staticmethod
    def _rows(index: torch.Tensor | None, count: int, name: str, x: torch.Tensor
              ) -> torch.Tensor:
        """Each image's row along one axis (all 0 when the axis is shared)."""
        if count == 1:
            return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        if index is None:
            raise ValueError(f"this norm has {count} rows of {name}: pass {name}")
        return index.to(x.device).long()

    def _normalise_by_site(self, x: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        """Training-mode normalisation with each site's batch statistics; updates the running
        rows of the sites present."""
        present = torch.unique(site)
        if present.numel() == 1:  # a site's own training batch: one site
            return self._normalise(x, int(present))
        out = torch.zeros_like(x)
        for row in present.tolist():
            rows = (site == row).nonzero(as_tuple=True)[0]
            out = out.index_copy(0, rows, self._normalise(x[rows], row))
        return out

    def _normalise(self, x: torch.Tensor, row: int) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean[row], self.running_var[row], None, None, True,
                            self.momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.channels}, sites={self.sites}, classes={self.classes}, eps={self.eps}, "
                f"momentum={self.momentum}")
