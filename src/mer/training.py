"""The one training loop every classifier in mer uses (train, baselines, transfer fine-tuning).

AdamW, class-weighted cross-entropy, gradient-norm clipping, early stopping on dev UA (the best
epoch's weights are restored), per-epoch metrics to dvclive. Seeded and deterministic on CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dvclive import Live
from mer.data import MultimodalData, load_splits
from mer.evaluation import classification_metrics
from mer.models.fusion import FusionConfig, FusionModel
from mer.params import EMOTIONS, MODALITIES, FusionParams, ModelParams, TrainParams
from mer.seeding import seed_everything

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """Hyper-parameters of :func:`fit` (filled from the ``train`` / ``transfer`` params)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    grad_clip: float
    seed: int


@dataclass
class FitResult:
    """What :func:`fit` returns: the best epoch, its dev UA and the per-epoch history."""

    best_epoch: int
    best_dev_ua: float
    history: dict[str, list[float]] = field(default_factory=dict)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (absent classes get weight 0).

    >>> class_weights(torch.tensor([0, 0, 0, 1]), 2).tolist()
    [0.5, 1.5]
    """
    counts = torch.bincount(labels, minlength=num_classes).float()
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return weights * (counts > 0).sum() / weights.sum()


@torch.inference_mode()
def predict(model: FusionModel, data: MultimodalData, batch_size: int = 64) -> pd.DataFrame:
    """Per-utterance predictions: utt_id, label_id, pred_id, prob_<emotion>, gate_<modality>."""
    model.eval()
    logits, gates = [], []
    for batch in data.batches(batch_size):
        output = model(batch.features, batch.masks)
        logits.append(output.logits)
        if output.gates is not None:
            gates.append(output.gates)
    probs = torch.softmax(torch.cat(logits), dim=-1).numpy()
    frame = pd.DataFrame({"utt_id": data.table["utt_id"], "label_id": data.table["label_id"]})
    frame["pred_id"] = probs.argmax(-1)
    for i, emotion in enumerate(EMOTIONS[: probs.shape[1]]):
        frame[f"prob_{emotion}"] = probs[:, i]
    if gates:
        gate_values = torch.cat(gates).numpy()
        for i, modality in enumerate(model.modalities):
            frame[f"gate_{modality}"] = gate_values[:, i]
    for column in ("text_reliable", "audio_reliable", "video_reliable"):
        if column in data.table:
            frame[column] = data.table[column].to_numpy()
    return frame


def evaluate_ua(model: FusionModel, data: MultimodalData) -> float:
    """Unweighted accuracy of ``model`` on ``data``."""
    frame = predict(model, data)
    return classification_metrics(frame["label_id"], frame["pred_id"], EMOTIONS)["ua"]


def fit(
    model: FusionModel,
    train: MultimodalData,
    dev: MultimodalData,
    cfg: LoopConfig,
    live: Any | None = None,
    prefix: str = "",
) -> FitResult:
    """Train ``model`` in place; restore the weights of the best dev-UA epoch.

    Args:
        live: a ``dvclive.Live`` (or None); metrics are logged as ``{prefix}train/loss``,
            ``{prefix}dev/ua`` ... one step per epoch.
    """
    generator = seed_everything(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = class_weights(train.labels, model.config.num_classes)
    best = FitResult(best_epoch=-1, best_dev_ua=-1.0)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history: dict[str, list[float]] = {"train_loss": [], "dev_ua": []}
    stale = 0
    for epoch in range(cfg.epochs):
        model.train()
        total, seen = 0.0, 0
        for batch in train.batches(cfg.batch_size, shuffle=True, generator=generator):
            output = model(batch.features, batch.masks, labels=batch.labels, class_weights=weights)
            optimizer.zero_grad()
            output.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            total += float(output.loss.detach()) * len(batch.labels)
            seen += len(batch.labels)
        dev_ua = evaluate_ua(model, dev)
        history["train_loss"].append(round(total / seen, 5))
        history["dev_ua"].append(dev_ua)
        if live is not None:
            live.log_metric(f"{prefix}train/loss", history["train_loss"][-1])
            live.log_metric(f"{prefix}dev/ua", dev_ua)
            if model.beta is not None:
                live.log_metric(f"{prefix}beta", round(model.beta, 5))
            live.next_step()
        if dev_ua > best.best_dev_ua:
            best = FitResult(best_epoch=epoch, best_dev_ua=dev_ua)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            stale = 0
        else:
            stale += 1
            if stale >= cfg.patience:
                logger.info(
                    "early stop at epoch %d (best %d, dev UA %.4f)", epoch, best.best_epoch, best.best_dev_ua
                )
                break
    model.load_state_dict(best_state)
    best.history = history
    return best


def save_model(model: FusionModel, path: str | Path) -> Path:
    """Save weights together with the config, so the model reloads without params.yaml."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, path)
    return path


def load_model(path: str | Path) -> FusionModel:
    """Reload a model saved by :func:`save_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model not found; run `dvc repro train` first")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = FusionModel(FusionConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def loop_config(train: TrainParams, **overrides: Any) -> LoopConfig:
    """The loop hyper-parameters from the ``train`` params, with ``overrides`` (e.g. transfer's)."""
    values = {
        "epochs": train.epochs, "batch_size": train.batch_size, "lr": train.lr,
        "weight_decay": train.weight_decay, "patience": train.patience,
        "grad_clip": train.grad_clip, "seed": train.seed,
    }  # fmt: skip
    return LoopConfig(**{**values, **overrides})


def train_source_model(
    mode: str,
    model_params: ModelParams,
    train_params: TrainParams,
    fusion_params: FusionParams | None,
    metadata_path: str | Path,
    feature_root: str | Path,
    model_out: str | Path,
    predictions_out: str | Path,
    live_dir: str | Path,
) -> FitResult:
    """Train a ``mode`` classifier on the source train split (early stopping on dev), save it and
    its source-test predictions. ``fusion_params`` is only read by the main model."""
    fusion_params = fusion_params or FusionParams(mode=mode)
    # every model (main and baselines) sees the same rows: those with features in all of
    # model.modalities, so their scores compare; a unimodal baseline then keeps its modality only
    splits = load_splits(metadata_path, feature_root, model_params.modalities)
    if mode in MODALITIES:
        splits = {name: data.only([mode]) for name, data in splits.items()}
    config = FusionConfig(
        input_dims=splits["train"].dims(),
        modalities=model_params.modalities,
        mode=mode,
        d_model=model_params.d_model,
        num_heads=model_params.num_heads,
        num_cross_layers=model_params.num_cross_layers,
        dropout=model_params.dropout,
        beta=fusion_params.beta,
        beta_learnable=fusion_params.beta_learnable,
        gate=fusion_params.gate,
        num_classes=len(EMOTIONS),
    )
    seed_everything(train_params.seed)
    model = FusionModel(config)
    model.set_feature_statistics(splits["train"].frame_statistics())
    with Live(str(live_dir), save_dvc_exp=False, dvcyaml=None) as live:
        result = fit(model, splits["train"], splits["dev"], loop_config(train_params), live=live)
        live.log_metric("best_epoch", result.best_epoch, plot=False)
        live.log_metric("best_dev_ua", result.best_dev_ua, plot=False)
    save_model(model, model_out)
    predictions = predict(model, splits["test"])
    predictions["n_missing_features"] = splits["test"].n_missing
    Path(predictions_out).parent.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(predictions_out, index=False)
    logger.info(
        "%s: best epoch %d, dev UA %.4f, beta %s", mode, result.best_epoch, result.best_dev_ua, model.beta
    )
    return result
