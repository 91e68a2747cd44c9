"""robustness stage: how the main model and the concat baseline hold up when a modality is
missing or the audio is noisy (MultiBench-style), on the test split of ``transfer.source_fold``.

Conditions, each scored on every saved seed of both models:

- ``clean``: the stored features (what the train stage's test predictions saw);
- ``without <modality>``: that modality absent for every utterance (the model masks it; what
  absence means per fusion mode: docs/models.md);
- ``<noise> <snr> dB``: the test audio decoded as the extract stage decodes it, ``white``
  (seeded Gaussian) or ``babble`` (the sum of ``babble_talkers`` other test utterances of the
  corpus itself) noise added at that SNR, re-encoded with the encoder the model records
  (:class:`mer.predict.Predictor`: same code, hashes checked), text and video as stored.

Every condition's UA carries the interval of :mod:`mer.uncertainty` and its paired difference
from ``clean`` (same utterances, same seeds). Writes ``results/robustness.csv`` (the table, for
the report and the model card) and ``metrics/robustness.json`` (a few headline numbers: each
model's clean and worst-case UA, MAE for a regression model, and the worst condition's change).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mer import uncertainty
from mer.checkpoints import load_model
from mer.data import MultimodalData, load_splits
from mer.external import is_external
from mer.extract import encode_utterance, load_input
from mer.files import write_json
from mer.params import RobustnessParams
from mer.predict import Predictor
from mer.skips import SKIP_FILE
from mer.train import predict

logger = logging.getLogger(__name__)

COLUMNS = (
    "model", "condition", "kind", "modality", "snr_db", "metric", "value", "low", "high", "delta",
    "delta_low", "delta_high", "verdict", "n_seeds", "n_test",
)  # fmt: skip


def add_noise(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + g * noise`` with ``g`` setting the power ratio to ``snr_db``, clipped to [-1, 1].

    >>> signal, noise = 0.1 * np.sin(np.arange(16000) / 5.0), np.random.default_rng(0).normal(size=16000)
    >>> mixed = add_noise(signal, noise, 10.0)
    >>> round(float(10 * np.log10(np.mean(signal**2) / np.mean((mixed - signal) ** 2))), 1)
    10.0
    """
    signal_power, noise_power = float(np.mean(signal**2)), float(np.mean(noise**2))
    if signal_power == 0.0 or noise_power == 0.0:
        return signal
    gain = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return np.clip(signal + gain * noise, -1.0, 1.0).astype(signal.dtype)


def babble(waveforms: list[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """The sum of ``waveforms`` (other utterances), each tiled / cut to ``length`` from a random
    offset, normalised to unit power."""
    mixed = np.zeros(length, dtype=np.float64)
    for waveform in waveforms:
        tiled = np.resize(waveform, len(waveform) + length)
        start = int(rng.integers(0, len(waveform)))
        mixed += tiled[start : start + length]
    power = float(np.mean(mixed**2))
    return mixed / np.sqrt(power) if power > 0 else mixed


def _noisy_audio(
    predictor: Predictor, table: pd.DataFrame, noise: str, snr: float, params: RobustnessParams
) -> list[np.ndarray]:
    """Each test utterance's audio features with ``noise`` at ``snr`` dB (seeded per condition)."""
    rng = np.random.default_rng([params.seed, round(snr * 10) + 1000, params.noises.index(noise)])
    rows = table.to_dict("records")
    # babble: every utterance's talkers come from the clean test waveforms, decoded once
    clean = [load_input(row, "audio", predictor.cfg)[0] for row in rows] if noise == "babble" else []
    features = []
    for index, row in enumerate(rows):
        others = [i for i in range(len(rows)) if i != index]
        talkers = (
            rng.choice(others, size=min(params.babble_talkers, len(others)), replace=False) if clean else []
        )

        def noisy(waveform: np.ndarray, talkers=talkers) -> np.ndarray:
            if noise == "white":
                return add_noise(waveform, rng.standard_normal(len(waveform)), snr)
            return add_noise(waveform, babble([clean[t] for t in talkers], len(waveform), rng), snr)

        features.append(encode_utterance(row, "audio", predictor.encoders["audio"], predictor.cfg, noisy))
    return features


def _conditions(test: MultimodalData, modalities: tuple[str, ...]) -> dict[str, tuple[str, str, float]]:
    """name -> (kind, modality, snr) of the conditions without noise."""
    conditions = {"clean": ("clean", "", np.nan)}
    if len(modalities) > 1:  # a unimodal model without its modality has nothing left to score
        conditions.update({f"without {m}": ("removed", m, np.nan) for m in modalities})
    return conditions


def _runs(frames: dict[int, pd.DataFrame], num_classes: int) -> uncertainty.Runs:
    return uncertainty.Runs.from_frames({"test": frames}, num_classes=num_classes)


def evaluate_robustness(
    *,
    models: dict[str, str | Path],
    metadata_path: str | Path,
    feature_root: str | Path,
    params: RobustnessParams,
    out_csv: str | Path,
    metrics_path: str | Path,
    fold: str | None = None,
    splits_path: str | Path | None = None,
) -> pd.DataFrame:
    """Score each of ``models`` (name -> model directory) under every condition; write the table
    and the headline metrics. Noisy audio is encoded once per condition and shared by the models
    that record the same audio encoder."""
    rows = []
    noisy_cache: dict[tuple, list[np.ndarray]] = {}
    metrics: dict[str, float] = {}
    for name, model_dir in models.items():
        if (Path(model_dir) / SKIP_FILE).is_file():  # a recipe the corpus cannot support (mer.skips)
            logger.warning("%s: %s was skipped by its stage; not scored", name, model_dir)
            continue
        trained = load_model(model_dir)
        modalities = trained.modalities
        test = load_splits(metadata_path, feature_root, modalities, fold, splits_path)["test"]
        classes = len(trained.classes)
        data = {cond: test if kind == "clean" else test.only([m for m in modalities if m != mod])
                for cond, (kind, mod, _) in _conditions(test, modalities).items()}  # fmt: skip
        specs = dict(_conditions(test, modalities))
        external = "audio" in modalities and is_external(trained.encoders["audio"]["model"])
        if external:  # noisy waveforms cannot be turned into released features
            logger.warning("%s: its audio features are released ones: no noisy-audio conditions", name)
        if "audio" in modalities and not external:
            predictor = Predictor(trained, modalities=("audio",))  # text and video as stored
            for noise in params.noises:
                for snr in params.snrs:
                    condition = f"{noise} {snr:g} dB"
                    key = (trained.encoders["audio"]["weights_hash"], noise, snr)
                    if key not in noisy_cache:
                        logger.info("%s: encoding the test audio with %s", name, condition)
                        noisy_cache[key] = _noisy_audio(predictor, test.table, noise, snr, params)
                    sequences = {m: test.sequences[m] for m in modalities}
                    sequences["audio"] = noisy_cache[key]
                    data[condition] = MultimodalData(test.table, sequences, test.n_missing)
                    specs[condition] = (noise, "audio", snr)
        runs = {}
        for condition, condition_data in tqdm(data.items(), desc=f"robustness {name}", unit="condition"):
            frames = {seed: predict(model, condition_data) for seed, model in trained.models.items()}
            runs[condition] = _runs(frames, classes)
        metric = "ua" if trained.config.task == "classification" else "mae"  # regression: MAE
        for condition, condition_runs in runs.items():
            kind, modality, snr = specs[condition]
            est = uncertainty.estimate(condition_runs, (metric,))[metric]
            row = {"model": name, "condition": condition, "kind": kind, "modality": modality, "snr_db": snr,
                   "metric": metric, "value": est.value, "low": est.low, "high": est.high,
                   "n_seeds": est.n_seeds, "n_test": est.n_test}  # fmt: skip
            if condition != "clean":
                delta = uncertainty.compare(condition_runs, runs["clean"], (metric,))[metric]
                row.update(
                    delta=delta.delta, delta_low=delta.low, delta_high=delta.high, verdict=delta.verdict
                )
            rows.append(row)
        table = pd.DataFrame([r for r in rows if r["model"] == name])
        worst = table.loc[
            table["value"].idxmax() if uncertainty.lower_is_better(metric) else table["value"].idxmin()
        ]
        clean = float(table.loc[table["condition"] == "clean", "value"].iloc[0])
        metrics[f"{name}/clean_{metric}"] = round(clean, 4)
        metrics[f"{name}/worst_{metric}"] = round(float(worst["value"]), 4)
        metrics[f"{name}/worst_delta_{metric}"] = round(float(worst["value"]) - clean, 4)
        logger.info(
            "%s: clean %s %.4f, worst %.4f (%s)", name, metric, clean, worst["value"], worst["condition"]
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).round(4)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_csv, index=False)
    write_json(metrics_path, metrics)
    return frame
