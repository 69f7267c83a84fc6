"""client/state_files.py: a failed write leaves the previous file whole and no temp file."""

import pytest
import torch

from medgan_models.state_files import torch_save_atomically


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "state" / "kept.pt"
    torch_save_atomically({"round": 1}, path)  # makes the folder
    with pytest.raises(Exception):
        torch_save_atomically({"round": 2, "bad": lambda: None}, path)  # cannot be pickled
    assert torch.load(path, weights_only=True) == {"round": 1}
    assert [p.name for p in path.parent.iterdir()] == ["kept.pt"]
