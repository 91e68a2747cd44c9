"""Train seed-002 feature adapters from the target domain's feature space into the source's.

Distribution matching by MSE on frame pairs (target frame, source frame), one adapter per
modality, applied position-wise. Pairing (``adapt.pairing``):

- ``random`` (seed 002): a target frame is paired with a random source frame. The minimiser of
  that MSE is the constant source mean, so this adapter mostly recentres features; it is kept
  for fidelity to the seed and as a baseline.
- ``nearest`` (label-free): each target frame is paired with its nearest neighbour among a
  random pool of source frames, after standardising each domain with its own per-dimension
  statistics; the adapter learns a distribution-matching map that keeps frames apart.
- ``class``: the source frame comes from a source utterance of the same emotion as the target
  utterance, using the labels of a stratified ``adapt.labelled_fraction``% subset of the target
  train split (the same subset the transfer stage fine-tunes on at that fraction).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mer.data import MultimodalData, load_splits
from mer.models.adapter import AdapterConfig, FeatureAdapter
from mer.params import AdaptParams
from mer.seeding import seed_everything
from mer.splits import stratified_positions

logger = logging.getLogger(__name__)


@dataclass
class AdapterResult:
    """A trained adapter and its training record."""

    adapter: FeatureAdapter
    record: dict


def _frame_pools(data: MultimodalData, modality: str, by_label: bool) -> dict[int, np.ndarray]:
    """All frames of ``modality``, grouped by label (or all under key -1): `(N_frames, D)`."""
    pools: dict[int, list[np.ndarray]] = {}
    for sequence, label in zip(data.sequences[modality], data.labels.tolist(), strict=True):
        pools.setdefault(label if by_label else -1, []).append(np.asarray(sequence, dtype=np.float32))
    return {key: np.concatenate(frames) for key, frames in pools.items()}


def _nearest(
    target_frames: np.ndarray,
    source_frames: np.ndarray,
    standardise: dict[str, tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    pool_size: int,
) -> np.ndarray:
    """For each target frame `(P, D_t)`, the nearest of ``pool_size`` random source frames
    `(P, D_s)`, distances taken between per-domain standardised frames (needs D_t == D_s)."""
    if target_frames.shape[1] != source_frames.shape[1]:
        raise ValueError("adapt.pairing 'nearest' needs equal feature dims in both domains; use 'random'")
    pool = source_frames[rng.integers(len(source_frames), size=pool_size)]  # (K, D)
    (t_mean, t_std), (s_mean, s_std) = standardise["target"], standardise["source"]
    queries = torch.from_numpy((target_frames - t_mean) / t_std)  # (P, D)
    keys = torch.from_numpy((pool - s_mean) / s_std)  # (K, D)
    return pool[torch.cdist(queries, keys).argmin(dim=1).numpy()]


def _mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(np.linalg.norm(a.mean(0) - b.mean(0))), 4)


def train_adapter(
    source: MultimodalData, target: MultimodalData, modality: str, cfg: AdaptParams
) -> AdapterResult:
    """Train one adapter mapping ``target``'s ``modality`` features into ``source``'s space.

    Args:
        source: source-domain train data (labels used for ``class`` pairing).
        target: target-domain train data; only the labelled subset's labels are used.
    """
    generator = seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    by_label = cfg.pairing == "class"
    if by_label:
        target = target.subset(stratified_positions(target.labels.numpy(), cfg.labelled_fraction, cfg.seed))
    source_pools = _frame_pools(source, modality, by_label)
    target_pools = _frame_pools(target, modality, by_label)
    keys = [k for k in target_pools if k in source_pools]
    if not keys:
        raise ValueError(f"{modality}: no emotion class has frames in both domains; cannot pair")

    config = AdapterConfig(
        input_dim=target_pools[keys[0]].shape[1],
        output_dim=source_pools[keys[0]].shape[1],
        hidden_dim=cfg.hidden_dim,
        dropout=cfg.dropout,
    )
    adapter = FeatureAdapter(config)
    optimizer = torch.optim.Adam(adapter.parameters(), lr=cfg.lr)
    losses = []
    per_key = max(1, cfg.pairs_per_epoch // len(keys))
    standardise = {}
    if cfg.pairing == "nearest":
        for name, pools in (("target", target_pools), ("source", source_pools)):
            frames = np.concatenate(list(pools.values()))
            standardise[name] = (frames.mean(0), frames.std(0) + 1e-6)
    for _ in range(cfg.epochs):
        inputs, targets = [], []
        for key in keys:
            inputs.append(target_pools[key][rng.integers(len(target_pools[key]), size=per_key)])
            if cfg.pairing == "nearest":
                targets.append(_nearest(inputs[-1], source_pools[key], standardise, rng, cfg.pairs_per_epoch))
            else:
                targets.append(source_pools[key][rng.integers(len(source_pools[key]), size=per_key)])
        inputs_t = torch.from_numpy(np.concatenate(inputs))  # (P, D_in)
        targets_t = torch.from_numpy(np.concatenate(targets))  # (P, D_out)
        order = torch.randperm(len(inputs_t), generator=generator)
        adapter.train()
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            index = order[start : start + cfg.batch_size]
            if len(index) < 2:  # BatchNorm needs two samples
                continue
            loss = torch.nn.functional.mse_loss(adapter(inputs_t[index]), targets_t[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        losses.append(round(total / len(order), 5))

    all_source = np.concatenate(list(source_pools.values()))
    all_target = np.concatenate(list(target_pools.values()))
    adapted = adapter.transform(all_target)
    record = {
        "pairing": cfg.pairing,
        "labelled_utterances": len(target) if by_label else 0,
        "loss_first_epoch": losses[0],
        "loss_last_epoch": losses[-1],
        "mean_distance_before": _mean_distance(all_target, all_source)
        if all_target.shape[1] == all_source.shape[1]
        else None,
        "mean_distance_after": _mean_distance(adapted, all_source),
    }
    logger.info("adapter %s: %s", modality, record)
    return AdapterResult(adapter=adapter, record=record)


def save_adapter(adapter: FeatureAdapter, path: str) -> None:
    """Save an adapter with its config."""
    torch.save({"config": adapter.config.to_dict(), "state_dict": adapter.state_dict()}, path)


def load_adapter(path: str) -> FeatureAdapter:
    """Reload an adapter saved by :func:`save_adapter` (eval mode)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    adapter = FeatureAdapter(AdapterConfig(**checkpoint["config"]))
    adapter.load_state_dict(checkpoint["state_dict"])
    return adapter.eval()


def train_adapters(
    cfg: AdaptParams,
    modalities: list[str],
    source_metadata: str | Path,
    target_metadata: str | Path,
    source_features: str | Path,
    target_features: str | Path,
    out_dir: str | Path,
) -> dict:
    """Train and save one adapter per modality (``out_dir/<modality>.pt``); return the records."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = load_splits(source_metadata, source_features, modalities)["train"]
    target = load_splits(target_metadata, target_features, modalities)["train"]
    records = {}
    for modality in modalities:
        result = train_adapter(source, target, modality, cfg)
        save_adapter(result.adapter, str(out_dir / f"{modality}.pt"))
        records[modality] = result.record
    return records
