"""mer.optim: torch's AdamW and ReduceLROnPlateau bit for bit, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mer.optim import AdamW, ReduceOnPlateau


def _two_branch_model(seed: int) -> torch.nn.ModuleDict:
    torch.manual_seed(seed)
    return torch.nn.ModuleDict({
        "trunk": torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.GELU(), torch.nn.Linear(16, 5)),
        "side": torch.nn.Linear(7, 5),  # used every third step only: its grad is None otherwise
        "norm": torch.nn.LayerNorm(5),
    })  # fmt: skip


def _train(model: torch.nn.ModuleDict, optimizer, scheduler, steps: int = 30) -> list[float]:
    generator = torch.Generator().manual_seed(5)
    rates = []
    for step in range(steps):
        inputs = torch.randn(9, 7, generator=generator)
        hidden = model["trunk"](inputs)
        if step % 3 == 0:
            hidden = hidden + model["side"](inputs)
        loss = model["norm"](hidden).pow(2).mean() + hidden.abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step(-float(loss.detach()) if step % 4 else 0.1 * step)  # plateaus, negative and positive
        rates.append(optimizer.lr if isinstance(optimizer, AdamW) else optimizer.param_groups[0]["lr"])
    return rates


@pytest.mark.parametrize("weight_decay", [0.01, 0.0])
def test_adamw_and_plateau_equal_torch_bit_for_bit(weight_decay):
    ours, theirs = _two_branch_model(0), _two_branch_model(0)
    mine = AdamW(ours.parameters(), lr=0.01, weight_decay=weight_decay)
    torch_cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    reference = torch_cls(theirs.parameters(), lr=0.01, weight_decay=weight_decay, foreach=True)
    my_rates = _train(ours, mine, ReduceOnPlateau(mine, mode="max", factor=0.5, patience=2))
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(reference, mode="max", factor=0.5, patience=2)
    torch_rates = _train(theirs, reference, plateau)
    assert my_rates == torch_rates
    assert len(set(my_rates)) >= 3  # the schedule did reduce, more than once
    for (name, mine_p), (_, theirs_p) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert torch.equal(mine_p, theirs_p), name
    assert not torch.equal(ours["side"].weight, _two_branch_model(0)["side"].weight)  # it was trained


def test_parameters_without_gradient_are_left_alone():
    model = _two_branch_model(1)
    frozen = model["side"].weight.detach().clone()
    optimizer = AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    model["trunk"](torch.randn(3, 7)).sum().backward()
    optimizer.step()
    assert torch.equal(model["side"].weight, frozen)  # no grad: no decay either
    assert id(model["side"].weight) not in optimizer.state


def test_min_mode_equals_torch():
    mine = AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ours = ReduceOnPlateau(mine, mode="min", factor=0.3, patience=1)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(reference, mode="min", factor=0.3, patience=1)
    for score in [5, 4, 4, 4.0001, 3, 3, 3, -1, -1, -1.00001, -1, -1, -2]:
        ours.step(score)
        theirs.step(score)
        assert mine.lr == reference.param_groups[0]["lr"]
    assert mine.lr < 0.1


def test_bad_hyper_parameters_are_refused():
    with pytest.raises(ValueError, match="no parameters"):
        AdamW([], lr=0.1)
    with pytest.raises(ValueError, match="lr=-1"):
        AdamW([torch.nn.Parameter(torch.zeros(1))], lr=-1)
    with pytest.raises(ValueError, match="mode"):
        ReduceOnPlateau(AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1), mode="up")


def test_training_imports_no_dynamo():
    """The point of mer.optim: a training process never pays torch._dynamo's import."""
    script = """
import sys
from tests.conftest import make_sequences, make_table
from mer.data import MultimodalData
from mer.models.fusion import FusionConfig
from mer.train import LoopConfig, build_model, fit
from mer.adapt import build_adapter, fit_adapter
from mer.params import AdaptParams
import numpy as np
dims = {"text": 6, "audio": 5}
splits = {}
for seed, split in enumerate(("train", "dev")):
    table = make_table(4, (split,))
    splits[split] = MultimodalData.from_arrays(table, make_sequences(table, dims, seed=seed))
model = build_model(FusionConfig(d_model=8, num_heads=2, modalities=("text", "audio")), dims)
cfg = LoopConfig(epochs=2, batch_size=8, lr=1e-3, weight_decay=0.01, patience=5, grad_clip=1.0, seed=0)
result = fit(model, splits["train"], splits["dev"], cfg)
assert len(result.history["train_loss"]) == 2
rows = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
adapt = AdaptParams(epochs=1, pairs_per_epoch=16, batch_size=8)
fit_adapter(build_adapter(rows, rows, "coral", adapt), rows, rows, "coral", adapt, np.random.default_rng(0))
print("dynamo imported:", "torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dynamo imported: False" in out.stdout
