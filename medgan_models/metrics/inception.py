"""The standard Inception-v3 detector (FID / IS) from a LOCAL TorchScript file; never downloads.

The file is ``inception-2015-12-05.pt`` of StyleGAN2-ADA / clean-fid: called as
``detector(uint8 NCHW 3-channel, return_features=True)`` -> (N, 2048) pool features, or with
``return_features=False`` -> (N, 1008) softmax probabilities; it resizes internally.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_PT_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
                    "metrics/inception-2015-12-05.pt")
INCEPTION_PKL_URL = ("https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/"
                     "versions/1/files/metrics/inception-2015-12-05.pkl")


def load_inception(path: str | Path, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """Load the TorchScript Inception detector from ``path`` (eval mode, on ``device``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Inception detector not found at '{path}'. This project never downloads weights: "
            f"fetch the TorchScript file by hand from {INCEPTION_PT_URL} (the same network as "
            f"a pickle: {INCEPTION_PKL_URL}) and pass its local path.")
    detector = torch.jit.load(str(path), map_location=device)
    return detector.eval()


def _detector_device(detector: torch.nn.Module) -> torch.device:
    for tensor in list(detector.parameters()) + list(detector.buffers()):
        return tensor.device
    return torch.device("cpu")


def to_uint8_rgb(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, 3, H, W); one channel is repeated three times."""
    x = torch.as_tensor(images).detach().to(torch.float32).cpu()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def _run(detector: torch.nn.Module, images: np.ndarray | torch.Tensor, return_features: bool,
         batch_size: int, device: torch.device | str | None) -> np.ndarray:
    device = torch.device(device) if device is not None else _detector_device(detector)
    pixels = to_uint8_rgb(images)
    out = [detector(pixels[start:start + batch_size].to(device),
                    return_features=return_features).detach().cpu().to(torch.float64)
           for start in range(0, pixels.shape[0], batch_size)]
    if not out:
        raise ValueError("no images given")
    return torch.cat(out).numpy()


def inception_features(detector: torch.nn.Module, images: np.ndarray | torch.Tensor,
                       batch_size: int = 64, device: torch.device | str | None = None
                       ) -> np.ndarray:
    """(N, 2048) float64 pool features of images in [-1, 1] (N, C, H, W)."""
    return _run(detector, images, True, batch_size, device)


def inception_probabilities(detector: torch.nn.Module, images: np.ndarray | torch.Tensor,
                            batch_size: int = 64, device: torch.device | str | None = None
                            ) -> np.ndarray:
    """(N, 1008) float64 class probabilities of images in [-1, 1] (N, C, H, W)."""
    return _run(detector, images, False, batch_size, device)


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Mean and std over ``splits`` chunks of exp(E_x KL(p(y|x) || p(y)))."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < splits or splits < 1:
        raise ValueError(f"need (N >= splits, classes) probabilities, got {p.shape}, {splits=}")
    eps = 1e-12
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + eps) - np.log(marginal + eps))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
