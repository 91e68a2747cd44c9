"""The one training loop every model in mer uses (train, baselines, ablation, transfer fine-tuning).

AdamW, the model's own loss (class-weighted cross-entropy plus its auxiliary terms, or the
regression loss), gradient-norm clipping, ReduceLROnPlateau and early stopping on the dev score
(UA; -MAE for regression; the best epoch's weights are restored), bf16 autocast on CUDA,
per-epoch metrics to dvclive (and to the log at debug level). Seeded and deterministic on CPU.
Under ``torchrun`` the model is wrapped in DistributedDataParallel and each rank takes its share
of every global batch. Batches are cut from each split's packed sequences
(:meth:`mer.data.MultimodalData.pack`), packed once per stage; a stage shows one progress bar
over its runs (:func:`progress_bar`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dvclive import Live
from mer import distributed, predictions
from mer.checkpoints import encoder_records, save_weights, write_config
from mer.data import MultimodalData, load_splits
from mer.devices import resolve_device
from mer.metrics import classification_metrics, regression_metrics
from mer.models.fusion import FusionConfig, FusionModel, sentiment_classes
from mer.models.layer_weighting import stored_layer_count
from mer.optim import AdamW, ReduceOnPlateau
from mer.params import TrainParams
from mer.provenance import params_hash
from mer.seeding import seed_everything
from mer.vocab import EMOTIONS, MODALITIES
from mer.workers import cpu_cores, forked_map, on_cpu, single_threaded

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
    lr_factor: float = 0.5
    lr_patience: int = 3
    device: str = "cpu"
    amp: bool = True


@dataclass
class FitResult:
    """What :func:`fit` returns: the best epoch, its dev score (UA, or -MAE for regression) and
    the per-epoch history."""

    best_epoch: int
    best_dev_score: float
    history: dict[str, list[float]] = field(default_factory=dict)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (absent classes get weight 0).

    >>> class_weights(torch.tensor([0, 0, 0, 1]), 2).tolist()
    [0.5, 1.5]
    """
    counts = torch.bincount(labels, minlength=num_classes).float()
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return weights * (counts > 0).sum() / weights.sum()


def progress_bar(total: int, desc: str, rank: int = 0) -> tqdm:
    """One bar over a stage's runs (``unit="run"``) with tqdm's time-left estimate.

    Shown by rank 0 only (under ``torchrun`` every rank runs the same loop); off where stderr is
    not a terminal (CI, captured logs: tqdm's ``disable=None``) and when ``TQDM_DISABLE`` is set
    to anything but ``0`` / ``false`` / ``no``.
    """
    disabled_by_env = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    return tqdm(total=total, desc=desc, unit="run", disable=True if rank != 0 or disabled_by_env else None)


@contextlib.contextmanager
def showing(bar: tqdm) -> Iterator[tqdm]:
    """``bar``, closed at the end; while it shows, log lines print above it instead of through it."""
    with bar, logging_redirect_tqdm() if not bar.disable else contextlib.nullcontext():
        yield bar


@contextlib.contextmanager
def _no_nan_fill() -> Iterator[None]:
    """Deterministic mode (:func:`mer.seeding.seed_everything`) also fills every new tensor with
    NaN, to expose reads of uninitialised memory; no op of the loop reads one (its results are
    bit-identical without the fills) and the fills cost ~5% of a CPU step (bench/PROFILE.md)."""
    previous = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = previous


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict(model: FusionModel, data: MultimodalData, batch_size: int = 64) -> pd.DataFrame:
    """Per-utterance predictions.

    Columns: ``utt_id``, ``label_id``, then ``pred_id`` and ``prob_<emotion>`` (classification)
    or ``sentiment`` and ``sentiment_pred`` (regression); ``gate_<modality>`` where the model
    gates; ``sentiment_label_id`` / ``sentiment_pred_id`` with a multi-task sentiment head; the
    synthetic corpus's ``<modality>_reliable`` flags.
    """
    model.eval()
    device = next(model.parameters()).device
    logits, gates, sentiment_logits = [], [], []
    for batch in data.batches(batch_size):
        batch = batch.to(device)
        output = model(batch.features, batch.masks)
        logits.append(output.logits.float().cpu())
        if output.gates is not None:
            gates.append(output.gates.float().cpu())
        if output.sentiment_logits is not None:
            sentiment_logits.append(output.sentiment_logits.float().cpu())
    frame = pd.DataFrame({"utt_id": data.table["utt_id"], "label_id": data.table["label_id"]})
    scores = torch.cat(logits)
    if model.config.task == "regression":
        frame["sentiment"] = data.sentiment.numpy()
        frame["sentiment_pred"] = scores[:, 0].numpy()
    else:
        probs = torch.softmax(scores, dim=-1).numpy()
        frame["pred_id"] = probs.argmax(-1)
        for i, name in enumerate(data.classes[: probs.shape[1]]):
            frame[f"prob_{name}"] = probs[:, i]  # the class names travel with the predictions
    if gates:
        gate_values = torch.cat(gates).numpy()
        for i, modality in enumerate(model.modalities):
            frame[f"gate_{modality}"] = gate_values[:, i]
    if sentiment_logits:
        frame["sentiment_label_id"] = sentiment_classes(data.sentiment).numpy()
        frame["sentiment_pred_id"] = torch.cat(sentiment_logits).argmax(-1).numpy()
    for column in ("text_reliable", "audio_reliable", "video_reliable"):
        if column in data.table:
            frame[column] = data.table[column].to_numpy()
    return frame


@torch.inference_mode()
def dev_score(model: FusionModel, data: MultimodalData, batch_size: int = 64) -> float:
    """The early-stopping score (higher is better): UA, or -MAE for regression.

    Computed from the logits alone, as :func:`predict` computes them (same batches, same
    softmax and argmax), without building its table: the loop reads this score every epoch.
    """
    model.eval()
    device = next(model.parameters()).device
    logits = []
    for batch in data.batches(batch_size):
        batch = batch.to(device)
        logits.append(model(batch.features, batch.masks).logits.float().cpu())
    scores = torch.cat(logits)  # (N, C), or (N, 1) for regression
    if model.config.task == "regression":
        return -regression_metrics(data.sentiment.numpy(), scores[:, 0].numpy())["mae"]
    predicted = torch.softmax(scores, dim=-1).numpy().argmax(-1)
    return classification_metrics(data.labels.numpy(), predicted, data.classes)["ua"]


def evaluate_ua(model: FusionModel, data: MultimodalData) -> float:
    """Unweighted accuracy of a classifier on ``data``."""
    frame = predict(model, data)
    return classification_metrics(frame["label_id"], frame["pred_id"], data.classes)["ua"]


@_no_nan_fill()
def fit(
    model: FusionModel,
    train: MultimodalData,
    dev: MultimodalData,
    cfg: LoopConfig,
    live: Any | None = None,
    prefix: str = "",
    alignment: Any | None = None,
) -> FitResult:
    """Train ``model`` in place; restore the weights of the best dev-score epoch.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) gradients are averaged across ranks by DDP; every
    rank scores the whole dev split, so all take the same early-stopping decision.

    Only parameters with ``requires_grad`` are trained (few-shot strategies freeze the rest).

    Args:
        alignment: a :class:`mer.alignment.Alignment` (or None): its loss on a source and a
            target batch is added at every step (domain adaptation while fine-tuning).
        live: a ``dvclive.Live`` (or None); metrics are logged as ``{prefix}train/loss``,
            ``{prefix}dev/ua`` (``dev/mae`` for regression), the learning rate and the learned
            fusion weights, one step per epoch.
    """
    rank, world_size = distributed.setup()
    device = resolve_device(cfg.device, "train.device")
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", rank % torch.cuda.device_count())
    model.to(device)
    generator = seed_everything(cfg.seed)
    trained: torch.nn.Module = model
    if world_size > 1:
        trained = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if alignment is not None:
        parameters += alignment.parameters(model.embedding_dim)
    # torch's multi-tensor AdamW (one kernel per update instead of ~100 per-parameter ones: 8%
    # of a CPU step) without torch.optim's torch._dynamo import (mer.optim)
    optimizer = AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = ReduceOnPlateau(optimizer, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience)
    regression = model.config.task == "regression"
    weights = None if regression else class_weights(train.labels, model.config.num_classes).to(device)
    # the starting weights are a candidate (epoch -1): fine-tuning that never beats the source
    # model on dev keeps it instead of its least-bad epoch
    best = FitResult(best_epoch=-1, best_dev_score=dev_score(model, dev))
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history: dict[str, list[float]] = {"train_loss": [], "dev_score": [], "lr": []}
    if alignment is not None:
        history["align_loss"] = []
    stale = 0
    for epoch in range(cfg.epochs):
        model.train()
        total, seen, terms, aligned = 0.0, 0, {}, 0.0
        for batch in train.batches(cfg.batch_size, True, generator, rank=rank, world_size=world_size):
            batch = batch.to(device)
            with _autocast(device, cfg.amp):
                output = trained(
                    batch.features, batch.masks, labels=batch.labels, class_weights=weights,
                    vad=batch.vad, sentiment=batch.sentiment,
                )  # fmt: skip
            loss = output.loss
            if alignment is not None:
                with _autocast(device, cfg.amp):
                    align_loss = alignment.loss(trained, cfg.batch_size, generator, device)
                loss = loss + align_loss
                aligned += float(align_loss.detach()) * len(batch.labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, cfg.grad_clip, foreach=True)
            optimizer.step()
            total += float(output.loss.detach()) * len(batch.labels)
            seen += len(batch.labels)
            for name, value in output.losses.items():
                terms[name] = terms.get(name, 0.0) + value * len(batch.labels)
        score = dev_score(model, dev)
        scheduler.step(score)
        history["train_loss"].append(round(total / seen, 5))
        history["dev_score"].append(score)
        history["lr"].append(optimizer.lr)
        if alignment is not None:
            history["align_loss"].append(round(aligned / seen, 5))
        logger.debug(
            "%sepoch %d: train loss %.4f, dev %.4f, lr %.2g",
            prefix, epoch, history["train_loss"][-1], score, history["lr"][-1],
        )  # fmt: skip
        if live is not None and rank == 0:
            live.log_metric(f"{prefix}train/loss", history["train_loss"][-1])
            for name, value in terms.items():
                live.log_metric(f"{prefix}train/loss_{name}", round(value / seen, 5))
            live.log_metric(f"{prefix}dev/{'mae' if regression else 'ua'}", abs(score))
            live.log_metric(f"{prefix}lr", history["lr"][-1])
            for name, value in model.fusion_weights().items():
                live.log_metric(f"{prefix}{name}", value)
            live.next_step()
        if score > best.best_dev_score:
            best = FitResult(best_epoch=epoch, best_dev_score=score)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            stale = 0
        else:
            stale += 1
            if stale >= cfg.patience:
                logger.debug(
                    "%searly stop at epoch %d (best %d, dev %.4f)",
                    prefix, epoch, best.best_epoch, best.best_dev_score,
                )  # fmt: skip
                break
    model.load_state_dict(best_state)
    model.to("cpu")
    best.history = history
    return best


def loop_config(train: TrainParams, **overrides: Any) -> LoopConfig:
    """The loop hyper-parameters from the ``train`` params, with ``overrides`` (e.g. transfer's);
    the seed is the first of ``train.seeds`` unless overridden."""
    values = {
        "epochs": train.epochs, "batch_size": train.batch_size, "lr": train.lr,
        "weight_decay": train.weight_decay, "patience": train.patience,
        "grad_clip": train.grad_clip, "seed": train.seeds[0], "lr_factor": train.lr_factor,
        "lr_patience": train.lr_patience, "device": train.device, "amp": train.amp,
    }  # fmt: skip
    return LoopConfig(**{**values, **overrides})


def build_model(
    config: FusionConfig,
    input_dims: dict[str, int],
    num_classes: int = len(EMOTIONS),
    input_layers: dict[str, int] | None = None,
) -> FusionModel:
    """A fresh model from ``config`` bound to the data's feature dims, classes and stored layers
    (``input_layers``, K per modality: :func:`stored_layers`; None: one each)."""
    layers = {m: k for m, k in (input_layers or {}).items() if k > 1}  # one layer: nothing to bind
    return FusionModel(
        dataclasses.replace(config, input_dims=input_dims, num_classes=num_classes, input_layers=layers)
    )


def stored_layers(feature_root: str | Path, modalities: tuple[str, ...] | list[str]) -> dict[str, int]:
    """K, the encoder layers stored side by side, of each modality's features (``meta.json``)."""
    return {
        m: stored_layer_count(json.loads((Path(feature_root) / m / "meta.json").read_text()))
        for m in modalities
    }


_SEED_JOB: dict[str, Any] = {}  # the stage's data and settings, for _train_seed (forked workers inherit it)


def seed_workers(device: str, seeds: int, world_size: int = 1) -> int:
    """Processes training a stage's seeds: on CPU one per seed, all at once (single-threaded, so
    a seed's model depends on neither the workers nor the cores; :mod:`mer.workers`), at most two
    per core; one (this process) on a GPU or under ``torchrun``.

    One per seed even past the core count: 3 seeds time-sliced on 2 cores finish together, where 2
    workers would leave one core idle while the third seed trains (bench/PROFILE.md)."""
    if world_size > 1 or not on_cpu(device):
        return 1
    return max(1, min(seeds, 2 * cpu_cores()))


def _train_seed(index: int) -> tuple[FitResult, FusionConfig, dict[str, float]]:
    """Train, save and predict with seed ``train.seeds[index]`` of :data:`_SEED_JOB`."""
    job = _SEED_JOB
    config, train_params, splits, rank = job["config"], job["train_params"], job["splits"], job["rank"]
    seed = train_params.seeds[index]
    with single_threaded(train_params.device):
        seed_everything(seed)
        model = build_model(config, splits["train"].dims(), len(splits["train"].classes), job["layers"])
        model.set_feature_statistics(job["statistics"])
        live = None
        if rank == 0:
            live = Live(str(job["live_dir"] / f"seed{seed}"), save_dvc_exp=False, dvcyaml=None)
        with live if live is not None else contextlib.nullcontext():
            result = fit(
                model, splits["train"], splits["dev"], loop_config(train_params, seed=seed), live=live
            )
            if live is not None:
                live.log_metric("best_epoch", result.best_epoch, plot=False)
                live.log_metric("best_dev_score", result.best_dev_score, plot=False)
        if rank == 0:
            save_weights(model, job["model_dir"], seed)
            # test predictions are what is reported; dev predictions are what models are selected on
            for split in ("test", "dev"):
                frame = predict(model, splits[split])
                frame["n_missing_features"] = splits[split].n_missing
                predictions.write(frame, job["predictions_dir"], seed, split)
    return result, model.config, model.fusion_weights()


def train_source_model(
    *,
    config: FusionConfig,
    train_params: TrainParams,
    metadata_path: str | Path,
    feature_root: str | Path,
    model_dir: str | Path,
    predictions_dir: str | Path,
    live_dir: str | Path,
    fold: str | int | None = None,
    splits_path: str | Path | None = None,
) -> list[FitResult]:
    """Train one ``config`` model per seed in ``train.seeds`` on the source train split (early
    stopping on dev); save them as one model directory (:mod:`mer.checkpoints`: ``config.json`` and
    ``seed<k>.safetensors``, first seed first), the
    source-test predictions ``predictions_dir/seed<k>.parquet`` and the dev predictions
    ``predictions_dir/dev/seed<k>.parquet``. Rank 0 writes under torchrun.
    ``fold`` / ``splits_path``: train and test on that protocol fold (``mer.protocols``)."""
    # every model (main and baselines) sees the same rows: those with features in all of
    # model.modalities, so their scores compare; a unimodal baseline then keeps its modality only
    splits = load_splits(metadata_path, feature_root, config.modalities, fold, splits_path)
    if config.mode in MODALITIES:
        splits = {name: data.only([config.mode]) for name, data in splits.items()}
    if config.task == "regression" and np.isnan(splits["train"].sentiment.numpy()).all():
        raise ValueError(
            f"{metadata_path}: fusion.task is regression but no training row has a sentiment score"
        )
    rank, world_size = distributed.setup()
    model_dir, predictions_dir, live_dir = Path(model_dir), Path(predictions_dir), Path(live_dir)
    statistics = splits["train"].frame_statistics()
    layers = stored_layers(feature_root, config.used_modalities)
    for data in splits.values():  # padded batches are cut from these for every seed and epoch
        data.pack()
    _SEED_JOB.update(
        config=config, train_params=train_params, splits=splits, statistics=statistics, layers=layers,
        model_dir=model_dir, predictions_dir=predictions_dir, live_dir=live_dir, rank=rank,
    )  # fmt: skip
    seeds = train_params.seeds
    workers = seed_workers(train_params.device, len(seeds), world_size)
    results, configs = [], []
    try:
        with (
            forked_map(_train_seed, len(seeds), workers) as trained,
            showing(progress_bar(len(seeds), f"train {config.mode}", rank)) as bar,
        ):
            for seed, (result, model_config, weights) in zip(seeds, trained, strict=True):
                results.append(result)
                configs.append(model_config)
                logger.info(
                    "%s seed %d: best epoch %d, dev %.4f, %s",
                    config.mode, seed, result.best_epoch, result.best_dev_score, weights,
                )  # fmt: skip
                bar.update()
    finally:
        _SEED_JOB.clear()
    if rank == 0:
        table = splits["train"].table
        write_config(
            model_dir, config=configs[0], classes=splits["train"].classes, seeds=train_params.seeds,
            encoders=encoder_records(feature_root, config.used_modalities),
            corpus={"name": table.attrs.get("corpus"), "fold": None if fold is None else str(fold)},
            params_hash=params_hash(
                {"model": config.to_dict(), "train": dataclasses.asdict(train_params)}
            ),
        )  # fmt: skip
    return results
