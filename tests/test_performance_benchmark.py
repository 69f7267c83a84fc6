"""benchmarks/run.py's training-speed table runs every loop it compares (tiny sizes): a loop
that broke would print "fails: ..." instead of a speed."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks.run import throughput_table  # noqa: E402
from medgan_models.config import GRAD_SAMPLE_MODES  # noqa: E402


def test_every_loop_of_the_speed_table_runs_and_reports_images_per_second(capsys):
    table = throughput_table([16], batch=8, steps=2, device=torch.device("cpu"))
    row = table["16"]
    assert {"nonprivate", *GRAD_SAMPLE_MODES} <= set(row)
    assert all(isinstance(v, float) and v > 0 for v in row.values()), row
    assert "16x16:" in capsys.readouterr().out
