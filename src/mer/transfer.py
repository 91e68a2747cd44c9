"""Transfer of the source-trained model to the target domain: zero-shot with each feature adapter,
and few-shot fine-tuning strategies compared side by side.

Zero-shot: the source model (first training seed) on the target test split, on raw target
features (``none``) and on features mapped by each adapt-stage method.

Few-shot: for each data budget (``transfer.fractions``: percent of the target train split,
stratified and nested; ``transfer.shots``: k utterances per class) and each seed in
``transfer.seeds`` (the seed draws the subset and seeds training), every strategy in
``transfer.strategies`` starts from the source model and trains on the same subset, with early
stopping on the target dev split:

- ``full``: fine-tune every weight.
- ``head``: fine-tune the classification head only (the encoders stay frozen).
- ``adapters``: insert residual bottleneck adapters at the model's input (starting at the
  identity) and train only them.
- ``scratch``: a fresh model of the same architecture trained on the subset alone (the reference
  line: what the source model is worth). It uses the ``train`` loop settings.
- ``dann`` / ``mmd`` / ``coral``: ``full`` plus a domain-adaptation loss between the fused
  embeddings of source-train and (unlabelled) target-train batches, weighted by
  ``transfer.da_weight`` (seed 003's ``domain_adaptation.py`` list).

Across feature dims (``extract.target``: the target corpus read by another extractor, seed 002)
the raw target features cannot enter the model: ``none`` is skipped (recorded in
``records.json``), and every few-shot strategy trains on the target features mapped by the
adapter method that scores best zero-shot on the target *dev* split (:func:`choose_input_adapter`).

The model is read and the splits packed once per stage; every run starts from a copy of the
model and takes its subset as a view of the packed train split. On CPU the runs are spread over
single-threaded worker processes (:func:`fewshot_workers`), one per core torch would use.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mer import predictions, schema
from mer.adapt import load_adapter, load_adapters
from mer.alignment import Alignment
from mer.checkpoints import copy_model, load_model
from mer.data import MultimodalData, load_splits
from mer.logs import setup_logging
from mer.models.adapter import FeatureAdapter
from mer.models.fusion import FusionModel
from mer.params import TransferParams
from mer.seeding import seed_everything
from mer.splits import kshot_positions, stratified_positions
from mer.swap import SWAP_METHODS, SWAP_MODALITY, cheap_splits
from mer.train import LoopConfig, dev_score, fit, predict, progress_bar, showing
from mer.workers import on_cpu, single_threaded

logger = logging.getLogger(__name__)

DA_STRATEGIES = ("dann", "mmd", "coral")


def apply_adapters(data: MultimodalData, adapters: dict[str, FeatureAdapter]) -> MultimodalData:
    """Map each adapted modality's sequences through its adapter."""
    for modality, adapter in adapters.items():
        if modality in data.sequences:
            data = data.map(modality, adapter.transform)
    return data


def dim_mismatch(model: FusionModel, data: MultimodalData) -> dict[str, tuple[int, int]]:
    """``{modality: (feature dim, model input dim)}`` where ``data`` cannot enter ``model`` raw."""
    dims = data.dims()
    expected = model.config.input_dims
    return {m: (dims[m], expected[m]) for m in model.modalities if m in dims and dims[m] != expected[m]}


def choose_input_adapter(dev_scores: dict[str, float]) -> str:
    """The adapter method with the best zero-shot target-dev score (UA, or -MAE; the first
    listed wins ties), whose features the few-shot strategies train on across dims."""
    return max(dev_scores, key=lambda method: (dev_scores[method], -list(dev_scores).index(method)))


def prepare(model: FusionModel, strategy: str, subset: MultimodalData, bottleneck: int) -> FusionModel:
    """The model a strategy trains, with exactly the weights it may change left trainable."""
    if strategy == "scratch":
        fresh = FusionModel(model.config)
        fresh.set_feature_statistics(subset.frame_statistics())
        return fresh
    if strategy == "adapters":
        model.add_input_adapters(bottleneck)
    trainable = {
        "full": None, "dann": None, "mmd": None, "coral": None,
        "head": set(model.head_parameter_names()),
        "adapters": {n for n, _ in model.named_parameters() if n.startswith("input_adapters.")},
    }[strategy]  # fmt: skip
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(trainable is None or name in trainable)
    return model


def fewshot_subsets(labels: torch.Tensor, params: TransferParams, seed: int) -> dict[str, list[int]]:
    """``{"fraction/<pct>" | "kshot/<k>": positions}`` of the target train split for one seed."""
    subsets = {f"fraction/{p}": stratified_positions(labels.numpy(), p, seed) for p in params.fractions}
    subsets |= {f"kshot/{k}": kshot_positions(labels.numpy(), k, seed) for k in params.shots}
    return subsets


def swap_predictions(
    model: torch.nn.Module, test: MultimodalData, cheap_test: MultimodalData, adapters_dir: str | Path
) -> dict[str, pd.DataFrame]:
    """Predictions of ``model`` on ``test`` with its own audio (``original``) and with the cheap
    extractor's audio mapped by each swap adapter."""
    cheap = dict(zip(cheap_test.table["utt_id"], cheap_test.sequences[SWAP_MODALITY], strict=True))
    keep = [i for i, u in enumerate(test.table["utt_id"]) if u in cheap]
    test = test.subset(keep)
    frames = {"original": predict(model, test)}
    for method in SWAP_METHODS:
        adapter = load_adapter(Path(adapters_dir) / method / f"{SWAP_MODALITY}.pt")
        sequences = dict(test.sequences)
        sequences[SWAP_MODALITY] = [adapter.transform(cheap[u]) for u in test.table["utt_id"]]
        frames[method] = predict(model, MultimodalData(test.table, sequences))
    return frames


@dataclass(frozen=True)
class FewShotJob:
    """What every few-shot run reads: the model and data paths (a worker process loads them once)
    and the settings."""

    model_path: str
    source_metadata: str
    source_features: str
    target_metadata: str
    target_features: str
    params: TransferParams
    finetune_cfg: LoopConfig
    scratch_cfg: LoopConfig
    input_adapters: str = ""  # across dims: the chosen method's adapters dir ("" = raw features)


@dataclass
class FewShotData:
    """The source model and the packed target splits (and, for the domain-adaptation strategies,
    the packed source train split) that every few-shot run starts from."""

    model: FusionModel
    splits: dict[str, MultimodalData]
    source_train: MultimodalData | None

    @classmethod
    def load(cls, job: FewShotJob, model: FusionModel | None = None) -> FewShotData:
        """Read and pack once; every run's subset, batch and evaluation is cut from these."""
        model = load_model(job.model_path).first() if model is None else model
        modalities = list(model.modalities)
        splits = load_splits(job.target_metadata, job.target_features, modalities)
        if job.input_adapters:  # across dims: train on the adapted target features
            adapters = {m: load_adapter(Path(job.input_adapters) / f"{m}.pt") for m in modalities}
            splits = {name: apply_adapters(data, adapters) for name, data in splits.items()}
        source_train = None
        if any(s in DA_STRATEGIES for s in job.params.strategies):
            source_train = load_splits(job.source_metadata, job.source_features, modalities)["train"].pack()
        return cls(model, {name: data.pack() for name, data in splits.items()}, source_train)


@dataclass(frozen=True)
class FewShotRun:
    """One fine-tuning: ``strategy`` on the ``budget`` subset (``positions`` of the target train
    split) drawn with ``seed``, which also seeds the training."""

    seed: int
    budget: str
    strategy: str
    positions: tuple[int, ...]


def finetune(data: FewShotData, run: FewShotRun, job: FewShotJob) -> tuple[dict, pd.DataFrame]:
    """Train ``run``'s strategy from a copy of the source model; its record (subset size, best
    epoch, dev score) and its target-test predictions."""
    subset = data.splits["train"].subset(run.positions)  # a view into the packed train split
    alignment = None
    if run.strategy in DA_STRATEGIES:
        alignment = Alignment(run.strategy, job.params.da_weight, data.source_train, data.splits["train"])
    cfg = job.scratch_cfg if run.strategy == "scratch" else job.finetune_cfg
    seed_everything(run.seed)
    trained = prepare(copy_model(data.model), run.strategy, subset, job.params.adapter_bottleneck)
    cfg = dataclasses.replace(cfg, seed=run.seed)
    result = fit(trained, subset, data.splits["dev"], cfg, alignment=alignment)
    record = {"n_train": len(subset), "best_epoch": result.best_epoch, "dev": result.best_dev_score}
    return record, predict(trained, data.splits["test"])


def fewshot_workers(device: str, runs: int) -> int:
    """Processes that fine-tune side by side: on CPU one per thread torch would use, each
    single-threaded (:mod:`mer.workers`; 1.4x the fine-tunings per second on 2 cores,
    bench/train.py), on a GPU one. Every run seeds itself, so which process runs it is immaterial.
    """
    if not on_cpu(device):
        return 1
    return max(1, min(runs, torch.get_num_threads()))


_WORKER: dict[str, Any] = {}  # a worker process's job and FewShotData


def _start_worker(job: FewShotJob) -> None:
    torch.set_num_threads(1)
    setup_logging()
    _WORKER.update(job=job, data=FewShotData.load(job))


def _finetune_in_worker(run: FewShotRun) -> tuple[FewShotRun, dict, pd.DataFrame]:
    return run, *finetune(_WORKER["data"], run, _WORKER["job"])


def run_fewshot(
    data: FewShotData, job: FewShotJob, runs: list[FewShotRun], workers: int
) -> Iterator[tuple[FewShotRun, dict, pd.DataFrame]]:
    """``(run, record, test predictions)`` of every run, in this process (``workers`` <= 1) or
    as ``workers`` spawned processes finish them (each loads the job's data once)."""
    if workers <= 1:
        for run in runs:
            with single_threaded(job.finetune_cfg.device):
                result = finetune(data, run, job)
            yield run, *result
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(job,))
    try:
        for future in as_completed([pool.submit(_finetune_in_worker, run) for run in runs]):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def transfer_to_target(
    model_path: str | Path,
    adapters_dir: str | Path,
    adapt_methods: list[str],
    source_metadata: str | Path,
    source_features: str | Path,
    target_metadata: str | Path,
    target_features: str | Path,
    params: TransferParams,
    finetune_cfg: LoopConfig,
    scratch_cfg: LoopConfig,
    out_dir: str | Path,
    swap_features: str | Path | None = None,
    workers: int | None = None,
) -> dict:
    """Write ``out_dir/zeroshot/<method>/seed0.parquet`` (+ ``dev/seed0.parquet``, the target dev
    split, on which the adapter is selected) and
    ``out_dir/<fraction|kshot>/<budget>/<strategy>/seed<k>.parquet`` (target-test predictions) and
    return ``{budget: {strategy: {seed: record}}}`` (subset size, best epoch, dev score).

    With ``swap_features`` (the cheap extractor's source audio), also ``out_dir/swap/<method>/``:
    the model on the source test split with swapped, adapted audio (:mod:`mer.swap`).

    ``workers``: processes fine-tuning side by side (default :func:`fewshot_workers`); the
    records and predictions are the same for any number. Spawned worker processes import the
    caller's main module: a script calling this needs the ``if __name__ == "__main__":`` guard."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(model_path).first()  # read once; every fine-tuning starts from a copy
    modalities = list(model.modalities)
    if swap_features is not None:
        source_test = load_splits(source_metadata, source_features, modalities)["test"]
        cheap_test = cheap_splits(source_metadata, swap_features)["test"]
        for method, frame in swap_predictions(
            model, source_test, cheap_test, Path(adapters_dir) / "swap"
        ).items():
            predictions.write(frame, out_dir / "swap" / method, seed=0)
    if schema.read(target_metadata).empty:
        logger.info("%s: no target corpus (corpora.target: none), transfer skipped", target_metadata)
        (out_dir / "records.json").write_text("{}\n")
        return {}
    job = FewShotJob(
        str(model_path), str(source_metadata), str(source_features), str(target_metadata),
        str(target_features), params, finetune_cfg, scratch_cfg,
    )  # fmt: skip
    data = FewShotData.load(job, model)
    splits = data.splits
    mismatch = dim_mismatch(model, splits["test"])
    records: dict = {}
    if mismatch and not adapt_methods:
        raise ValueError(
            f"{target_features}: the target features' dims differ from the model's {mismatch} "
            "((target, model) per modality, extract.target): list an adapter in adapt.methods"
        )

    # zero-shot on the target test split, and on its dev split: the adapter is chosen on dev
    dev_scores: dict[str, float] = {}
    for method in ("none", *adapt_methods):
        if method == "none" and mismatch:  # no raw features fit the model: recorded, not run
            records["zeroshot/none"] = {"skipped": f"target dims differ from the model's: {mismatch}"}
            logger.warning("zero-shot without an adapter skipped: dims differ %s", mismatch)
            continue
        adapters = {} if method == "none" else load_adapters(adapters_dir, method, modalities)
        for split in ("test", "dev"):
            adapted = apply_adapters(splits[split], adapters)
            predictions.write(predict(model, adapted), out_dir / "zeroshot" / method, seed=0, split=split)
            if mismatch and split == "dev":
                dev_scores[method] = dev_score(model, adapted)
    if mismatch:
        chosen = choose_input_adapter(dev_scores)
        records["fewshot_inputs"] = {"adapter": chosen, "dev_scores": dev_scores, "dims": mismatch}
        logger.info("few-shot on target features adapted by %s (best zero-shot dev %s)", chosen, dev_scores)
        job = dataclasses.replace(job, input_adapters=str(Path(adapters_dir) / chosen))
        data = FewShotData.load(job, model)
        splits = data.splits

    runs = [
        FewShotRun(seed, budget, strategy, tuple(positions))
        for seed in params.seeds
        for budget, positions in fewshot_subsets(splits["train"].labels, params, seed).items()
        for strategy in params.strategies
    ]
    workers = fewshot_workers(finetune_cfg.device, len(runs)) if workers is None else workers
    with showing(progress_bar(len(runs), f"transfer ({workers} worker{'s' * (workers > 1)})")) as bar:
        for run, record, frame in run_fewshot(data, job, runs, workers):
            predictions.write(frame, out_dir / run.budget / run.strategy, run.seed)
            records.setdefault(run.budget, {}).setdefault(run.strategy, {})[run.seed] = record
            logger.info("%s %s seed %d: %s", run.budget, run.strategy, run.seed, record)
            bar.update()
    (out_dir / "records.json").write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    return records
