"""Server-side metrics: FRD ranks generators on the phantom data; FID/IS with a local file."""

import numpy as np
import torch
from test_metrics_inception import StandInDetector

from client.data import load_site_dataset
from client.site_evaluation import real_statistics
from medgan_models.config import RunConfig
from medgan_models.metrics import frechet_radiomic_distance, radiomic_features
from medgan_models.networks import build_models
from medgan_models.weights import pair_state
from server.evaluation import FederatedEvaluator


def test_frd_ranks_real_like_images_far_above_an_untrained_generator():
    config = RunConfig(image_size=32, eval_samples=200)
    sites = [load_site_dataset("phantom", i, 2, 32, samples_per_site=300, seed=1) for i in (0, 1)]
    evaluator = FederatedEvaluator(config)
    evaluator.pool_real([real_statistics(s, config, 0)[0] for s in sites],
                        [np.bincount(s.labels, minlength=2) for s in sites])
    torch.manual_seed(0)
    untrained = evaluator.server_side(pair_state(*build_models(config)))["frd"]
    unseen = load_site_dataset("phantom", 0, 2, 32, samples_per_site=300, seed=7).images
    perfect = frechet_radiomic_distance(evaluator.real["radiomic"], radiomic_features(unseen))
    assert perfect < 0.05 * untrained  # a generator that matched the data would score ~0


def test_fid_and_inception_score_appear_with_a_local_inception_file(tmp_path):
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(StandInDetector()).save(str(path))
    config = RunConfig(image_size=16, base_channels=8, latent_dim=8, eval_samples=40,
                       inception_path=str(path))
    site = load_site_dataset("phantom", 0, 1, 16, samples_per_site=60)
    stats, _ = real_statistics(site, config, 0)
    assert set(stats) == {"radiomic", "inception"}
    evaluator = FederatedEvaluator(config)
    evaluator.pool_real([stats], [np.bincount(site.labels, minlength=2)])
    metrics = evaluator.metrics(pair_state(*build_models(config)), [])
    assert metrics["fid"] > 0 and 1.0 <= metrics["inception_score"] <= 1008
    assert np.isfinite(metrics["frd"])
