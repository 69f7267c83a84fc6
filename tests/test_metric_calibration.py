"""benchmarks/metric_calibration.py: real images scored as if generated."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks import metric_calibration  # noqa: E402


def test_blur_keeps_the_mean_and_smooths_an_edge():
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    blurred = metric_calibration.gaussian_blur(edge, 0.8)
    assert blurred.shape == edge.shape
    assert float(blurred.mean()) == pytest.approx(float(edge.mean()), abs=1e-6)
    assert 0 < blurred[0, 0, 0, 3] < 0.5 < blurred[0, 0, 0, 4] < 1


def test_real_images_of_the_same_site_score_far_above_other_sites_and_near_misses(tmp_path):
    out = tmp_path / "calibration.json"
    assert metric_calibration.main(["--sites", "2", "--image-size", "32",
                                    "--samples-per-site", "300", "--json", str(out)]) == 0
    rows = {(r["reference"], r["generated"]): r for r in json.loads(out.read_text())}
    assert len(rows) == 2 * (2 + len(metric_calibration.alterations(0)))
    for site, other in ((0, 1), (1, 0)):
        same = rows[(f"site {site}", f"real, site {site}")]
        assert same["coverage"] > 0.8 and same["precision"] > 0.8
        assert rows[(f"site {site}", f"real, site {other}")]["coverage"] < same["coverage"] - 0.3
        blurred = rows[(f"site {site}", f"site {site}, blurred, sigma 0.8 px")]
        assert blurred["coverage"] < same["coverage"]
