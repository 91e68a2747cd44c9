"""Fit a small model on deterministic random data and save its test logits (run directly or
under ``torchrun``; tests/test_training.py compares the two)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch

from mer.data import MultimodalData
from mer.models.fusion import FusionConfig, FusionModel
from mer.seeding import seed_everything
from mer.train import LoopConfig, fit


def _data(split: str, n_per_class: int, seed: int) -> MultimodalData:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    table = pd.DataFrame({"utt_id": [f"{split}{i}" for i in range(len(labels))], "label_id": labels})
    centers = np.random.default_rng(99).normal(size=(4, 6)) * 2
    sequences = {
        m: [(rng.normal(size=(int(rng.integers(2, 6)), 6)) + centers[y]).astype(np.float32) for y in labels]
        for m in ("text", "audio")
    }
    return MultimodalData.from_arrays(table, sequences)


def main(out: str) -> None:
    train, dev, test = _data("train", 8, 0), _data("dev", 3, 1), _data("test", 3, 2)
    seed_everything(0)
    config = FusionConfig(
        input_dims={"text": 6, "audio": 6}, modalities=("text", "audio"), d_model=8, num_heads=2, dropout=0.0
    )
    model = FusionModel(config)
    cfg = LoopConfig(epochs=4, batch_size=8, lr=3e-3, weight_decay=0.0, patience=10, grad_clip=100.0, seed=0)
    fit(model, train, dev, cfg)
    with torch.no_grad():
        batch = next(test.batches(len(test)))
        logits = model(batch.features, batch.masks).logits
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if rank == 0:
        np.save(out, logits.numpy())


if __name__ == "__main__":
    main(sys.argv[1])
