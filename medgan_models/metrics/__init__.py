"""Image-quality, privacy-aware statistics and utility metrics (pure functions, no Flower)."""

from .dp_gaussian import analytic_gaussian_sigma, classic_gaussian_sigma, gaussian_delta
from .frechet import frechet_distance, trace_sqrt_product
from .gaussian_stats import FeatureStats, feature_stats, noisy_stats, pool_stats
from .inception import (
    INCEPTION_PKL_URL,
    INCEPTION_PT_URL,
    inception_features,
    inception_probabilities,
    inception_score,
    load_inception,
)
from .prdc import prdc
from .random_embedding import random_features
from .radiomics import (
    FEATURE_NAMES,
    frechet_radiomic_distance,
    radiomic_features,
    standardise,
    standardise_stats,
)
from .utility import SmallClassifier, accuracy, train_classifier

__all__ = [
    "FEATURE_NAMES",
    "INCEPTION_PKL_URL",
    "INCEPTION_PT_URL",
    "FeatureStats",
    "SmallClassifier",
    "accuracy",
    "analytic_gaussian_sigma",
    "classic_gaussian_sigma",
    "feature_stats",
    "frechet_distance",
    "frechet_radiomic_distance",
    "gaussian_delta",
    "inception_features",
    "inception_probabilities",
    "inception_score",
    "load_inception",
    "noisy_stats",
    "pool_stats",
    "prdc",
    "radiomic_features",
    "random_features",
    "standardise",
    "standardise_stats",
    "trace_sqrt_product",
    "train_classifier",
]
