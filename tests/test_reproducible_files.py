"""Equal objects give equal files in any process: what keeps a rerun's DVC hashes unchanged and lets
a team share one DVC cache."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

SAVE = r"""
import sys, torch
from torch import nn
from galaxyprop.data.io import save_object
ballast = [torch.zeros(int(sys.argv[2]))]      # moves every later allocation to another address
torch.manual_seed(0)
from types import SimpleNamespace
holder = SimpleNamespace()
holder.net = nn.Sequential(nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, 1))
holder.mean = torch.arange(7.0)
holder.table = {"b": 2, "a": 1}
save_object(holder, sys.argv[1])
"""


@pytest.mark.slow
def test_torch_objects_pickle_to_the_same_bytes_in_two_processes(tmp_path):
    import torch

    from galaxyprop.data.io import load_object

    digests = []
    for i, ballast in enumerate((10, 123_457)):
        path = tmp_path / f"{i}.joblib"
        subprocess.run([sys.executable, "-c", SAVE, str(path), str(ballast)], check=True)
        digests.append(hashlib.md5(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    back = load_object(tmp_path / "0.joblib", object)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    assert all(torch.equal(a, b) for a, b in zip(back.net.state_dict().values(), net.state_dict().values(), strict=True))
    assert isinstance(back.net[0].weight, torch.nn.Parameter) and back.net[0].weight.requires_grad
    assert torch.equal(back.mean, torch.arange(7.0)) and back.table == {"b": 2, "a": 1}
