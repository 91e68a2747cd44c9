"""Extractor swap (seed 002's real-time scenario): a cheap extractor's features mapped into the
space of the extractor a model was trained on, so the trained model runs unchanged.

The source corpus's audio is extracted twice: with the model's extractor (``extract.audio``)
and with the cheap one (``extract.audio_swap``, default ``acoustic-74``: 74-d frames aligned with
WavLM's 50 Hz). Adapters map cheap frames to model frames, trained on the source train split:

- ``seed002``: seed 002's adapter and objective, MSE on random (cheap, model) frame pairs.
- ``paired``: the same adapter, MSE on the *same* frame of the same utterance under both
  extractors (the pairing the data allows here).

The transfer stage then scores the source test split with the main model, its audio replaced by
adapted cheap features (``mer.transfer.swap_predictions``; metrics ``target/swap/<method>/ua``
beside ``target/swap/original/ua``, the model's own extractor).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mer import schema
from mer.adapt import build_adapter, fit_adapter, save_adapter
from mer.data import MultimodalData, load_splits
from mer.features import FeatureStore
from mer.models.adapter import FeatureAdapter
from mer.params import AdaptParams
from mer.seeding import seed_everything

logger = logging.getLogger(__name__)

SWAP_METHODS = ("seed002", "paired")
SWAP_MODALITY = "audio"


def paired_frames(cheap: MultimodalData, model: MultimodalData) -> tuple[np.ndarray, np.ndarray]:
    """Frame-aligned rows `(N, D_cheap)`, `(N, D_model)` of the same utterances (each pair of
    sequences cut to the shorter one: the two front ends may differ by a frame at the end)."""
    inputs, targets = [], []
    for cheap_seq, model_seq in zip(
        cheap.sequences[SWAP_MODALITY], model.sequences[SWAP_MODALITY], strict=True
    ):
        length = min(len(cheap_seq), len(model_seq))
        inputs.append(np.asarray(cheap_seq[:length], dtype=np.float32))
        targets.append(np.asarray(model_seq[:length], dtype=np.float32))
    return np.concatenate(inputs), np.concatenate(targets)


def train_swap_adapter(
    inputs: np.ndarray, targets: np.ndarray, method: str, cfg: AdaptParams
) -> tuple[FeatureAdapter, list[float]]:
    """Train a cheap -> model adapter on aligned frame rows; return it and its loss per epoch."""
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    adapter = build_adapter(inputs, targets, method, cfg)
    return adapter, fit_adapter(adapter, inputs, targets, method, cfg, rng)


def train_swap_adapters(
    cfg: AdaptParams,
    metadata_path: str | Path,
    model_features: str | Path,
    cheap_features: str | Path,
    out_dir: str | Path,
) -> dict:
    """Train and save ``out_dir/<method>/audio.pt`` for each swap method; return the records."""
    model_train = load_splits(metadata_path, model_features, [SWAP_MODALITY])["train"]
    cheap_train = cheap_splits(metadata_path, cheap_features)["train"]
    ids = set(model_train.table["utt_id"]) & set(cheap_train.table["utt_id"])
    model_train = model_train.subset([i for i, u in enumerate(model_train.table["utt_id"]) if u in ids])
    cheap_train = cheap_train.subset([i for i, u in enumerate(cheap_train.table["utt_id"]) if u in ids])
    inputs, targets = paired_frames(cheap_train, model_train)
    records = {}
    for method in SWAP_METHODS:
        adapter, losses = train_swap_adapter(inputs, targets, method, cfg)
        (Path(out_dir) / method).mkdir(parents=True, exist_ok=True)
        save_adapter(adapter, Path(out_dir) / method / f"{SWAP_MODALITY}.pt")
        records[method] = {
            "loss_first_epoch": losses[0],
            "loss_last_epoch": losses[-1],
            "frames": len(inputs),
        }
        logger.info("swap adapter %s: %s", method, records[method])
    return records


def cheap_splits(metadata_path: str | Path, cheap_features: str | Path) -> dict[str, MultimodalData]:
    """The corpus's splits with the cheap extractor's features under the ``audio`` name."""
    table = schema.read(metadata_path)
    store = FeatureStore(cheap_features)
    return {
        split: MultimodalData.load(
            table[table["split"] == split], {SWAP_MODALITY: store}, name=f"swap:{split}"
        )
        for split in ("train", "dev", "test")
    }
