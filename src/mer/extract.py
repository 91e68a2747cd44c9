"""Sequence-level feature extraction for one corpus x modality.

Reads the metadata table, loads each utterance's input (transcript, wav, video frames), runs the
frozen encoder in batches and writes ragged float16 shards with ``meta.json`` and ``verify.json``
(see :mod:`mer.features`). An unusable input (missing or corrupt file, empty transcript, NaN in
the encoder output) is quarantined with its reason, never dropped silently and never allowed to
stop the other utterances.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from mer import features, media
from mer.encoders import build_encoder
from mer.params import ExtractParams, as_dict

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


class ExtractionError(RuntimeError):
    """The written features failed verification."""


def _load_input(row: Any, modality: str, cfg: ExtractParams, counts: dict[str, int]) -> Any:
    if modality == "text":
        text = row.text if isinstance(row.text, str) else ""
        if not text.strip():
            raise ValueError("empty transcript")
        return text
    if modality == "audio":
        if not isinstance(row.audio_path, str):
            raise media.MediaError("no audio_path")
        waveform, info = media.read_audio(row.audio_path, SAMPLE_RATE, cfg.max_seconds)
        counts["resampled"] += bool(info["resampled"])
        counts["truncated"] += bool(info["truncated"])  # recorded: max_seconds cut these clips
        return waveform
    if not isinstance(row.video_path, str):
        raise media.MediaError("no video_path")
    return media.read_video_frames(row.video_path, cfg.frames_per_clip)


def _batches(table: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(table), size):
        yield table.iloc[start : start + size]


def _encode(encoder: Any, modality: str, inputs: list, cfg: ExtractParams) -> list[np.ndarray]:
    if modality == "text":
        return encoder.encode(inputs, cfg.max_len)
    return encoder.encode(inputs)


def _encode_or_quarantine(
    encoder: Any, modality: str, ids: list[str], inputs: list, cfg: ExtractParams, quarantined: list[dict]
) -> list[tuple[str, np.ndarray]]:
    """Encode a batch; if the encoder rejects it, encode item by item and quarantine the ones it
    rejects (e.g. a clip shorter than one frame), so one bad input never stops the batch."""
    try:
        return list(zip(ids, _encode(encoder, modality, inputs, cfg), strict=True))
    except ValueError:
        encoded = []
        for utt_id, item in zip(ids, inputs, strict=True):
            try:
                encoded.append((utt_id, _encode(encoder, modality, [item], cfg)[0]))
            except ValueError as error:
                quarantined.append({"utt_id": utt_id, "reason": f"encoder rejected it: {error}"})
        return encoded


def extract_modality(table: pd.DataFrame, modality: str, cfg: ExtractParams, out_dir: str | Path) -> dict:
    """Extract ``modality`` features for every row of ``table`` into ``out_dir``.

    Returns:
        The verification record (also written to ``out_dir/verify.json``).

    Raises:
        ExtractionError: if the stored shards fail verification.
    """
    out_dir = Path(out_dir)
    spec = {"text": cfg.text_model, "audio": cfg.audio_model, "video": cfg.video_model}[modality]
    encoder = build_encoder(modality, spec, init_seed=cfg.init_seed)
    info = encoder.info
    logger.info("%s: %s (%s), hidden_dim %d", modality, info.model, info.weights, info.hidden_dim)

    quarantined: list[dict] = []
    counts = {"resampled": 0, "truncated": 0}
    started = time.perf_counter()
    progress = tqdm(total=len(table), desc=f"extract {modality}", unit="utt")
    with features.ShardWriter(out_dir, info.hidden_dim, cfg.shard_size) as writer:
        for batch in _batches(table, cfg.batch_size):
            ids, inputs = [], []
            for row in batch.itertuples(index=False):
                try:
                    inputs.append(_load_input(row, modality, cfg, counts))
                    ids.append(row.utt_id)
                except (media.MediaError, ValueError, OSError) as error:
                    quarantined.append({"utt_id": row.utt_id, "reason": str(error)})
            if inputs:
                for utt_id, hidden_states in _encode_or_quarantine(
                    encoder, modality, ids, inputs, cfg, quarantined
                ):
                    if not np.isfinite(hidden_states).all():
                        quarantined.append({"utt_id": utt_id, "reason": "non-finite encoder output"})
                    elif not np.isfinite(hidden_states.astype(features.DTYPE)).all():
                        quarantined.append({"utt_id": utt_id, "reason": "overflows float16"})
                    else:
                        writer.add(utt_id, hidden_states)
            progress.update(len(batch))
    progress.close()
    seconds = time.perf_counter() - started

    for item in quarantined:
        logger.warning("quarantined %s (%s): %s", item["utt_id"], modality, item["reason"])
    meta = {
        "modality": modality,
        "model": info.model,
        "weights": info.weights,
        "config_hash": info.config_hash,
        "hidden_dim": info.hidden_dim,
        "dtype": "float16",
        "layout": "ragged: hidden[offsets[i]:offsets[i+1]] per utterance, no padding",
        "count": sum(s["count"] for s in writer.shards),
        "n_quarantined": len(quarantined),
        "n_resampled": counts["resampled"] if modality == "audio" else None,
        "n_truncated": counts["truncated"] if modality == "audio" else None,
        "encoder_extra": info.extra,
        "params": as_dict(cfg),
        "sample_rate": SAMPLE_RATE if modality == "audio" else None,
        "max_seconds": cfg.max_seconds if modality == "audio" else None,
        "max_len": cfg.max_len if modality == "text" else None,
        "frames_per_clip": cfg.frames_per_clip if modality == "video" else None,
        "shards": writer.shards,
    }
    features.write_json(out_dir / "meta.json", meta)
    record = features.verify(out_dir, table["utt_id"].tolist(), quarantined)
    features.write_json(out_dir / "verify.json", record)
    if not record["ok"]:
        raise ExtractionError(f"{out_dir}: verification failed: {record['problems']}")
    logger.info(
        "%s: %d stored, %d quarantined, %.1f utt/s", modality, record["n_stored"],
        record["n_quarantined"], len(table) / max(seconds, 1e-9),
    )  # fmt: skip
    return record
