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
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
import torch

from mer import predictions, schema
from mer.adapt import load_adapter, load_adapters
from mer.alignment import Alignment
from mer.data import MultimodalData, load_splits
from mer.models.adapter import FeatureAdapter
from mer.models.fusion import FusionModel
from mer.params import TransferParams
from mer.seeding import seed_everything
from mer.splits import kshot_positions, stratified_positions
from mer.swap import SWAP_METHODS, SWAP_MODALITY, cheap_splits
from mer.train import LoopConfig, copy_model, fit, load_model, predict, progress_bar, showing

logger = logging.getLogger(__name__)

DA_STRATEGIES = ("dann", "mmd", "coral")


def apply_adapters(data: MultimodalData, adapters: dict[str, FeatureAdapter]) -> MultimodalData:
    """Map each adapted modality's sequences through its adapter."""
    for modality, adapter in adapters.items():
        if modality in data.sequences:
            data = data.map(modality, adapter.transform)
    return data


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
) -> dict:
    """Write ``out_dir/zeroshot/<method>/seed0.parquet`` (+ ``dev/seed0.parquet``, the target dev
    split, on which the adapter is selected) and
    ``out_dir/<fraction|kshot>/<budget>/<strategy>/seed<k>.parquet`` (target-test predictions) and
    return ``{budget: {strategy: {seed: record}}}`` (subset size, best epoch, dev score).

    With ``swap_features`` (the cheap extractor's source audio), also ``out_dir/swap/<method>/``:
    the model on the source test split with swapped, adapted audio (:mod:`mer.swap`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(model_path)  # read once; every fine-tuning starts from a copy
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
    # packed once: every run's subset, batch and evaluation is cut from these
    splits = load_splits(target_metadata, target_features, modalities)
    splits = {name: data.pack() for name, data in splits.items()}
    source_train = None
    if any(s in DA_STRATEGIES for s in params.strategies):
        source_train = load_splits(source_metadata, source_features, modalities)["train"].pack()

    # zero-shot on the target test split, and on its dev split: the adapter is chosen on dev
    for method in ("none", *adapt_methods):
        adapters = {} if method == "none" else load_adapters(adapters_dir, method, modalities)
        for split in ("test", "dev"):
            frame = predict(model, apply_adapters(splits[split], adapters))
            predictions.write(frame, out_dir / "zeroshot" / method, seed=0, split=split)

    records: dict = {}
    subsets = {seed: fewshot_subsets(splits["train"].labels, params, seed) for seed in params.seeds}
    runs = [(seed, budget, strategy) for seed, budgets in subsets.items() for budget in budgets
            for strategy in params.strategies]  # fmt: skip
    with showing(progress_bar(len(runs), "transfer")) as bar:
        for seed, budget, strategy in runs:
            subset = splits["train"].subset(subsets[seed][budget])  # a view into the packed split
            alignment = None
            if strategy in DA_STRATEGIES:
                alignment = Alignment(strategy, params.da_weight, source_train, splits["train"])
            cfg = dataclasses.replace(scratch_cfg if strategy == "scratch" else finetune_cfg, seed=seed)
            seed_everything(seed)
            trained = prepare(copy_model(model), strategy, subset, params.adapter_bottleneck)
            result = fit(trained, subset, splits["dev"], cfg, alignment=alignment)
            predictions.write(predict(trained, splits["test"]), out_dir / budget / strategy, seed)
            record = {"n_train": len(subset), "best_epoch": result.best_epoch, "dev": result.best_dev_score}
            records.setdefault(budget, {}).setdefault(strategy, {})[seed] = record
            logger.info("%s %s seed %d: %s", budget, strategy, seed, record)
            bar.update()
    (out_dir / "records.json").write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    return records
