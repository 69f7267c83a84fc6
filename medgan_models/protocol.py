"""The message layout both sides agree on: record names and a site's round statuses."""

ARRAYS = "arrays"  # ArrayRecord: generator + discriminator weights
METRICS = "metrics"  # MetricRecord: num-examples, epsilon, delta, losses, DP-SGD parameters
SITE = "site"  # ConfigRecord: site-id, status, message
CONFIG = "config"  # ConfigRecord sent by the server: server-round

TRAINED = "trained"
BUDGET_EXHAUSTED = "budget-exhausted"
ERROR = "error"
