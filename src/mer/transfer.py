"""Few-shot transfer of the source-trained model to the target domain.

For each setting (``plain``: target features as extracted; ``adapter``: target features mapped
into the source space by the adapt stage's adapters) the source model is evaluated on the target
test split without fine-tuning (fraction 0) and after fine-tuning on stratified, nested
``fraction``% subsets of the target train split (early stopping on the target dev split).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from mer.data import MultimodalData, load_splits
from mer.models.adapter import FeatureAdapter
from mer.splits import stratified_positions
from mer.training import LoopConfig, fit, load_model, predict

logger = logging.getLogger(__name__)


def apply_adapters(data: MultimodalData, adapters: dict[str, FeatureAdapter]) -> MultimodalData:
    """Map each adapted modality's sequences through its adapter."""
    for modality, adapter in adapters.items():
        if modality in data.sequences:
            data = data.map(modality, adapter.transform)
    return data


def run_transfer(
    model_path: str | Path,
    splits: dict[str, MultimodalData],
    fractions: list[int],
    cfg: LoopConfig,
    setting: str,
) -> dict[int, tuple[pd.DataFrame, dict]]:
    """Zero-shot and fine-tuned predictions on ``splits['test']`` for each fraction.

    Returns:
        ``{fraction: (predictions, record)}`` with fraction 0 for zero-shot; ``record`` holds the
        number of fine-tuning utterances and the best epoch.
    """
    results: dict[int, tuple[pd.DataFrame, dict]] = {}
    model = load_model(model_path)
    results[0] = (predict(model, splits["test"]), {"n_train": 0, "best_epoch": None})
    for fraction in fractions:
        positions = stratified_positions(splits["train"].labels.numpy(), fraction, cfg.seed)
        subset = splits["train"].subset(positions)
        model = load_model(model_path)
        result = fit(model, subset, splits["dev"], cfg)
        logger.info(
            "%s %d%%: %d utterances, best epoch %d, dev score %.4f",
            setting, fraction, len(subset), result.best_epoch, result.best_dev_score,
        )  # fmt: skip
        record = {"n_train": len(subset), "best_epoch": result.best_epoch, "dev_score": result.best_dev_score}
        results[fraction] = (predict(model, splits["test"]), record)
    return results


def transfer_to_target(
    model_path: str | Path,
    adapters_dir: str | Path,
    target_metadata: str | Path,
    target_features: str | Path,
    fractions: list[int],
    cfg: LoopConfig,
    out_dir: str | Path,
) -> dict:
    """Run both settings (``plain``, ``adapter``) and write ``out_dir/<setting>_<fraction>.parquet``.

    Returns:
        ``{setting: {fraction: record}}``.
    """
    from mer.adapt import load_adapter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modalities = list(load_model(model_path).modalities)
    splits = load_splits(target_metadata, target_features, modalities)
    adapters = {m: load_adapter(str(Path(adapters_dir) / f"{m}.pt")) for m in modalities}
    settings = {
        "plain": splits,
        "adapter": {name: apply_adapters(data, adapters) for name, data in splits.items()},
    }
    records: dict = {}
    for setting, setting_splits in settings.items():
        records[setting] = {}
        for fraction, (predictions, record) in run_transfer(
            model_path, setting_splits, fractions, cfg, setting
        ).items():
            predictions.to_parquet(out_dir / f"{setting}_{fraction}.parquet", index=False)
            records[setting][fraction] = record
    return records
