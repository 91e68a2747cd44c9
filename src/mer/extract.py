"""Sequence-level feature extraction for one corpus x modality: bucketed, resumable, distributable.

The metadata rows are cut into fixed shards of ``extract.shard_size`` utterances (in metadata
order). Each shard is extracted independently:

1. media are decoded in DataLoader workers (``extract.num_workers``) while the encoder runs;
2. the shard's utterances are length-bucketed into batches under ``extract.batch_budget`` padded
   positions, so no batch pads beyond its own longest item;
3. the encoder runs under ``torch.inference_mode``; its outputs are stored unpadded in float16
   (:func:`mer.features.write_shard`, data then manifest, each written atomically).

A shard whose manifest, fingerprint (encoder + params + the shard's rows) and checksum check out
is skipped, so a killed run resumes where it stopped (DVC keeps the outputs: ``persist: true``).
Under ``torchrun --nproc-per-node N`` rank r extracts shards r, r+N, ...; rank 0 then merges the
manifests into ``meta.json``, ``quarantine.csv`` and ``verify.json``.

Features nobody reads are not extracted (:func:`extract_or_skip`): a modality not in
``model.modalities``, the swap extractor when ``adapt.swap`` is false, the empty target table of
``corpora.target: none``. Such a stage writes a skip record (:mod:`mer.skips`) in its emptied
output folder in seconds, building no encoder and decoding nothing; readers refuse the folder.

Unusable inputs (missing / corrupt media, no audio stream, zero-length audio, empty transcript, a
clip the encoder rejects) are quarantined with their reason and counted; NaN/Inf in an encoder
output fails the stage, naming the utterances.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mer import distributed, features, media
from mer.devices import resolve_device
from mer.encoders import build_encoder
from mer.encoders.base import check_layers
from mer.external import is_external
from mer.external.importer import import_features
from mer.files import write_json
from mer.params import ALL_LAYERS, ExtractParams, as_dict
from mer.skips import write_skip
from mer.validation import ParamsError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MAX_QUARANTINED_FRACTION = 0.5  # above this, a stage fails instead of quarantining
AUDIO_FRAME_RATE = 50  # WavLM / wav2vec2 / acoustic-74 frames per second
INPUT_COLUMNS = ("utt_id", "text", "audio_path", "video_path", "duration", "video_start", "video_end")


class ExtractionError(RuntimeError):
    """The encoder produced NaN/Inf, a shard is missing at merge, or verification failed."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


# the corpus has no file of this modality for the row (RAVDESS is audio-only, CREMA-D's videos are
# optional): still a quarantine entry, but not evidence of a broken setup (MAX_QUARANTINED_FRACTION)
NO_PATH = {"audio": "no audio_path in the metadata", "video": "no video_path in the metadata"}


def _window(row: dict) -> dict:
    """The optional window inside ``video_path`` (``video_start`` / ``video_end`` columns)."""
    start, end = row.get("video_start"), row.get("video_end")
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return {}
    return {"start": float(start), "end": float(end)}


def load_input(row: dict, modality: str, cfg: ExtractParams) -> tuple[Any, dict]:
    """Read one utterance's encoder input and a small record (resampled / truncated flags).

    Raises:
        media.MediaError / ValueError: the input is unusable; the caller quarantines it.
    """
    if modality == "text":
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty transcript")
        return text, {}
    if modality == "audio":
        if not isinstance(row.get("audio_path"), str):
            raise media.MediaError(NO_PATH["audio"])
        max_seconds = cfg.audio.max_seconds if cfg.audio.long_audio == "truncate" else None
        kwargs = {} if cfg.audio.normalize == "none" else {"normalize": cfg.audio.normalize}
        waveform, info = media.read_audio(row["audio_path"], SAMPLE_RATE, max_seconds, **kwargs)
        return waveform, {"resampled": bool(info["resampled"]), "truncated": bool(info["truncated"])}
    if not isinstance(row.get("video_path"), str):
        raise media.MediaError(NO_PATH["video"])
    kwargs = _window(row)
    if cfg.video.fps > 0:
        kwargs["fps"] = cfg.video.fps
    return media.read_video_frames(row["video_path"], cfg.video.frames_per_clip, **kwargs), {}


class InputDataset(Dataset):
    """Decodes one utterance per item (in a DataLoader worker); never raises on bad media."""

    def __init__(self, rows: list[dict], modality: str, cfg: ExtractParams) -> None:
        self.rows, self.modality, self.cfg = rows, modality, cfg

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, Any, dict, str | None]:
        try:
            value, record = load_input(self.rows[index], self.modality, self.cfg)
            return index, value, record, None
        except (media.MediaError, ValueError, OSError) as error:
            return index, None, {}, str(error)


def _as_list(batch: list) -> list:
    return batch


def length_proxy(row: dict, modality: str, cfg: ExtractParams) -> int:
    """Expected encoder positions of an utterance, for bucketing (before decoding anything)."""
    if modality == "text":
        text = row.get("text") if isinstance(row.get("text"), str) else ""
        return min(cfg.text.max_len, len(text) // 4 + 2)  # ~4 characters per word-piece
    duration = row.get("duration")
    duration = float(duration) if duration is not None and not pd.isna(duration) else 10.0
    if modality == "audio":
        if cfg.audio.long_audio == "truncate":
            duration = min(duration, cfg.audio.max_seconds)
        return max(1, int(duration * AUDIO_FRAME_RATE))
    if cfg.video.fps > 0:
        return max(1, min(8 * cfg.video.frames_per_clip, math.ceil(duration * cfg.video.fps)))
    return cfg.video.frames_per_clip


def bucket_batches(lengths: list[int], batch_size: int, budget: int) -> list[list[int]]:
    """Group item indices by length so each batch pads at most to its own longest item.

    Items are taken longest first; a batch grows while ``items x longest <= budget`` and
    ``items <= batch_size`` (an item longer than the budget gets a batch of its own).

    >>> bucket_batches([5, 1, 4, 2, 9], batch_size=2, budget=10)
    [[4], [0, 2], [3, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (len(current) + 1 > batch_size or (len(current) + 1) * longest > budget):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


# ---------------------------------------------------------------------------------------------
# Encoding one shard
# ---------------------------------------------------------------------------------------------


def stored_layers(encoder: Any, modality: str, cfg: ExtractParams) -> tuple[int, ...] | None:
    """``extract.<modality>.layers`` as indices of ``encoder``'s hidden states (``all``: every
    one, first to last); None for video. Checked when the encoder is built, before any work.

    Raises:
        ParamsError: an index out of range, or several layers of an encoder without any
            (``acoustic-74``), naming the key and the fix.
    """
    if modality not in ("text", "audio"):
        return None
    layers, key = getattr(cfg, modality).layers, f"extract.{modality}.layers"
    count = getattr(encoder, "num_hidden_states", None)
    if count is None:  # signal-processing features: one "layer"
        if layers != (-1,):
            raise ParamsError(
                f"{key}: {encoder.info.model} has no hidden layers to choose from; set {key}: [-1]"
            )
        return (-1,)
    if layers == ALL_LAYERS:
        return tuple(range(count))
    try:
        return check_layers(layers, count)
    except ValueError as error:
        raise ParamsError(
            f"{key}: {error} of {encoder.info.model}; pick indices in range or write all"
        ) from None


def pool_per_layer(hidden_states: np.ndarray) -> np.ndarray:
    """``extract.audio.pooling: mean_per_layer``: each stored layer's mean over the frames,
    ``(T, K * D)`` -> ``(1, K * D)`` (a column mean: the layer blocks sit side by side).

    Exact for any later linear step per frame (SUPERB's weighted layer sum and projector) followed
    by mean pooling, which then commute; not for a per-frame non-linearity (a layer norm).

    >>> pool_per_layer(np.array([[1.0, 10.0], [3.0, 30.0]], dtype=np.float32)).tolist()
    [[2.0, 20.0]]
    """
    return hidden_states.mean(axis=0, keepdims=True, dtype=np.float32)  # (1, K * D)


def _encode(encoder: Any, modality: str, inputs: list, cfg: ExtractParams) -> list[np.ndarray]:
    if modality == "text":
        if tuple(cfg.text.layers) != (-1,):
            return encoder.encode(inputs, cfg.text.max_len, layers=stored_layers(encoder, modality, cfg))
        return encoder.encode(inputs, cfg.text.max_len)
    if modality == "audio":
        options: dict[str, Any] = {}
        if cfg.audio.layers != (-1,):
            options["layers"] = stored_layers(encoder, modality, cfg)
        if cfg.audio.long_audio == "chunk":
            options.update(chunk_seconds=cfg.audio.chunk_seconds, overlap_seconds=cfg.audio.chunk_overlap)
        hidden = encoder.encode(inputs, **options)
        if cfg.audio.pooling == "mean_per_layer":
            hidden = [pool_per_layer(h) for h in hidden]
        return hidden
    if modality == "video" and getattr(encoder, "windowed", False):  # r3d-18: windows of frames
        return encoder.encode(inputs, frames_per_window=cfg.video.frames_per_clip)
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


def encode_utterance(
    row: dict, modality: str, encoder: Any, cfg: ExtractParams, transform: Callable[[Any], Any] | None = None
) -> np.ndarray:
    """One utterance's features as the extract stage stores them (``mer predict``): decoded by
    :func:`load_input`, encoded by the same call, rounded to the shards' float16. ``transform``
    (optional) changes the decoded input first (the robustness stage adds noise to waveforms).

    Raises:
        media.MediaError / ValueError: the input is unusable (missing, corrupt, empty);
        ExtractionError: NaN/Inf features.
    """
    value, _ = load_input(row, modality, cfg)
    if transform is not None:
        value = transform(value)
    bf16 = _device(cfg)[1]
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        hidden = _encode(encoder, modality, [value], cfg)[0]
    stored = np.asarray(hidden, dtype=np.float32).astype(features.DTYPE)
    if not np.isfinite(stored).all():
        raise ExtractionError(f"{modality}: NaN/Inf (or float16 overflow) in the features")
    return stored


def build_stage_encoder(
    cfg: ExtractParams, modality: str, *, spec: str | None = None, device: str = "cpu"
) -> Any:
    """The frozen encoder the ``extract`` section names for ``modality`` (or ``spec``, e.g. a
    trained model's recorded one), with the section's family options (the video embedding)."""
    options = {"embedding": cfg.video.embedding} if modality == "video" else {}
    spec = getattr(cfg, modality).model if spec is None else spec
    return build_encoder(modality, spec, init_seed=cfg.init_seed, device=device, **options)


def _extract_shard(
    rows: list[dict], modality: str, encoder: Any, cfg: ExtractParams, progress: tqdm
) -> tuple[list[str], list[np.ndarray], list[dict], dict[str, int]]:
    """Encode the rows of one shard; return ids and arrays in row order, quarantine, counts."""
    lengths = [length_proxy(row, modality, cfg) for row in rows]
    batches = bucket_batches(lengths, cfg.batch_size, cfg.batch_budget)
    loader = DataLoader(
        InputDataset(rows, modality, cfg), batch_sampler=batches, num_workers=cfg.num_workers,
        collate_fn=_as_list,
    )  # fmt: skip
    outputs: dict[int, np.ndarray] = {}
    quarantined: list[dict] = []
    counts = {"resampled": 0, "truncated": 0}
    position = {row["utt_id"]: i for i, row in enumerate(rows)}
    for batch in loader:
        ids, inputs = [], []
        for index, value, record, error in batch:
            if error is not None:
                quarantined.append({"utt_id": rows[index]["utt_id"], "reason": error})
                continue
            for key in counts:
                counts[key] += bool(record.get(key))
            ids.append(rows[index]["utt_id"])
            inputs.append(value)
        if inputs:
            encoded = _encode_or_quarantine(encoder, modality, ids, inputs, cfg, quarantined)
            bad = [utt_id for utt_id, hidden in encoded if not np.isfinite(hidden).all()]
            bad += [u for u, h in encoded if u not in bad and not np.isfinite(h.astype(features.DTYPE)).all()]
            if bad:
                raise ExtractionError(f"{modality}: NaN/Inf (or float16 overflow) in the features of {bad}")
            for utt_id, hidden in encoded:
                outputs[position[utt_id]] = hidden
        progress.update(len(batch))
    kept = sorted(outputs)
    quarantined.sort(key=lambda q: position[q["utt_id"]])
    return [rows[i]["utt_id"] for i in kept], [outputs[i] for i in kept], quarantined, counts


# ---------------------------------------------------------------------------------------------
# The stage: plan, resume, distribute, merge
# ---------------------------------------------------------------------------------------------


def _modality_params(cfg: ExtractParams, modality: str) -> dict:
    return asdict(getattr(cfg, modality))


def _device(cfg: ExtractParams) -> tuple[str, bool]:
    """(torch device, whether to autocast to bf16) for ``extract.device`` / ``extract.bf16``."""
    device = resolve_device(cfg.device, "extract.device")
    return str(device), device.type == "cuda" and cfg.bf16


# hashed into every shard's fingerprint, relative to src/mer: this module, media decoding, shard
# storage and every module of the encoder package (so a new encoder family is covered too)
CODE_FILES = (
    "extract.py",
    "media.py",
    "features.py",
    *sorted(f"encoders/{path.name}" for path in (Path(__file__).parent / "encoders").glob("*.py")),
)


def code_hash() -> str:
    """sha256 (16 hex) of the extraction code (:data:`CODE_FILES`): decoding, resampling,
    truncation, the encoders' input preparation. Recorded in ``meta.json`` and in every saved
    model, so ``mer predict`` detects a later change of preprocessing."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for name in CODE_FILES:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


def weights_hash(encoder: Any) -> str:
    """sha256 (16 hex) of the encoder's weights: its ``model``'s state dict, or the files it lists
    in ``weight_files`` (non-torch models, e.g. facemesh-65's .tflite files); "none" without."""
    weight_files = getattr(encoder, "weight_files", None)
    if weight_files:
        digest = hashlib.sha256()
        for path in weight_files:
            digest.update(Path(path).name.encode())
            digest.update(features.sha256(path).encode())
        return digest.hexdigest()[:16]
    model = getattr(encoder, "model", None)
    if not isinstance(model, torch.nn.Module):
        return "none"
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def code_and_weights_hash(encoder: Any, weights: str | None = None) -> str:
    """Both of the above in one hash (``weights``: :func:`weights_hash` if already computed): a
    shard made by other code or other weights (e.g. a re-saved local checkpoint) must not be
    resumed."""
    weights = weights_hash(encoder) if weights is None else weights
    return hashlib.sha256(f"{code_hash()}:{weights}".encode()).hexdigest()[:16]


def _file_digest(path: Any) -> str:
    """Content hash of a media file (or why there is none), so re-exported media invalidate."""
    if not isinstance(path, str) or not Path(path).is_file():
        return "missing"
    return features.sha256(path)[:16]


def shard_fingerprint(
    info: Any, cfg: ExtractParams, modality: str, rows: list[dict], encoder_hash: str = ""
) -> str:
    """What a shard's content depends on: encoder (config, weights, code), precision, the
    modality's params, and the rows, their media files' contents included."""
    media_column = {"audio": "audio_path", "video": "video_path"}.get(modality)
    payload = {
        "encoder": [info.model, info.weights, info.config_hash, encoder_hash],
        "precision": "bf16" if _device(cfg)[1] else "fp32",
        "init_seed": cfg.init_seed,
        "params": _modality_params(cfg, modality),
        "rows": [[str(row.get(c)) for c in INPUT_COLUMNS] for row in rows],
        "media": [_file_digest(row.get(media_column)) for row in rows] if media_column else [],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _rows(table: pd.DataFrame) -> list[dict]:
    columns = [c for c in INPUT_COLUMNS if c in table.columns]
    return table[columns].to_dict("records")


def skip_reason(
    table: pd.DataFrame, modality: str, model_modalities: tuple[str, ...], swap: bool | None = None
) -> dict | None:
    """Why nothing would read this extraction (``{"reason", "fix"}``), or None.

    ``swap``: ``adapt.swap`` for the extractor-swap stage (None for the others).

    >>> skip_reason(pd.DataFrame({"utt_id": ["a"]}), "video", ("text", "audio"))["reason"]
    "video is not in model.modalities ['text', 'audio']: no model reads it"
    """
    if table.empty:
        return {
            "reason": "the metadata table has no utterances (the target of corpora.target: none)",
            "fix": "set corpora.target to a corpus to transfer to",
        }
    if swap is False:
        return {
            "reason": "adapt.swap is false: nothing reads the extractor-swap features",
            "fix": "set adapt.swap: true",
        }
    if modality not in model_modalities:
        return {
            "reason": f"{modality} is not in model.modalities {list(model_modalities)}: no model reads it",
            "fix": f"add {modality} to model.modalities",
        }
    return None


def extract_or_skip(
    *,
    table: pd.DataFrame,
    modality: str,
    cfg: ExtractParams,
    out_dir: str | Path,
    model_modalities: tuple[str, ...],
    swap: bool | None = None,
) -> dict | None:
    """The extract stage: :func:`extract_modality`, or when nothing would read the features
    (:func:`skip_reason`) a skip record in the emptied ``out_dir`` (no encoder is built, no
    media decoded). Returns the verification record or the skip record."""
    skip = skip_reason(table, modality, model_modalities, swap)
    if skip is None:
        return extract_modality(table=table, modality=modality, cfg=cfg, out_dir=out_dir)
    record = {**skip, "stage": "extract", "modality": modality, "model": getattr(cfg, modality).model}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_skip(out_dir, record, clear=True)  # a persisted output: drop the features nobody reads
    logger.info("%s: %s skipped: %s", out_dir, modality, skip["reason"])
    return record


def extract_modality(
    table: pd.DataFrame, modality: str, cfg: ExtractParams, out_dir: str | Path, encoder: Any | None = None
) -> dict | None:
    """Extract ``modality`` features for every row of ``table`` into ``out_dir``.

    ``encoder`` (optional) is an already built encoder for ``cfg``'s model (benchmarks reuse one).
    An ``external:<path>`` model is no encoder: its released features are imported
    (:func:`mer.external.importer.import_features`).

    Returns:
        The verification record (also in ``out_dir/verify.json``) on rank 0, None on other ranks.

    Raises:
        ExtractionError: NaN/Inf features, a shard missing at merge, or failed verification.
    """
    spec = getattr(cfg, modality).model
    if encoder is None and is_external(spec):  # released features: read, not encoded (mer.external)
        if int(os.environ.get("RANK", "0")) != 0:  # one reader under torchrun; nothing to share
            return None
        return import_features(table=table, modality=modality, spec=spec, cfg=cfg, out_dir=out_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world = distributed.setup("gloo")  # the collectives here move CPU tensors
    if world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    device, bf16 = _device(cfg)
    if encoder is None:
        encoder = build_stage_encoder(cfg, modality, device=device)
    info = encoder.info
    weights = weights_hash(encoder)
    fingerprint_hash = code_and_weights_hash(encoder, weights)
    # several text / audio layers are stored side by side: (L, num_layers * D)
    layers = stored_layers(encoder, modality, cfg)
    stored_dim = info.hidden_dim * (len(layers) if layers else 1)
    rows = _rows(table)
    plan = [list(range(s, min(s + cfg.shard_size, len(rows)))) for s in range(0, len(rows), cfg.shard_size)]
    mine = [k for k in range(len(plan)) if k % world == rank]
    logger.info(
        "%s: %s (%s), %d utterances in %d shards, rank %d/%d",
        modality, info.model, info.weights, len(rows), len(plan), rank, world,
    )  # fmt: skip

    started, done, resumed = time.perf_counter(), 0, 0
    progress = tqdm(total=sum(len(plan[k]) for k in mine), desc=f"extract {modality}", unit="utt")
    # bf16 autocast on CUDA only: on CPU fp32 is faster and exact
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    error: BaseException | None = None
    fingerprints: dict[int, str] = {}  # reused by the merge: media are hashed once per run
    try:
        with torch.inference_mode(), autocast:
            for k in mine:
                shard_rows = [rows[i] for i in plan[k]]
                fingerprint = shard_fingerprint(info, cfg, modality, shard_rows, fingerprint_hash)
                fingerprints[k] = fingerprint
                if features.complete_shard(out_dir, k, fingerprint) is not None:
                    resumed += 1
                    progress.update(len(shard_rows))
                    continue
                ids, arrays, quarantined, counts = _extract_shard(
                    shard_rows, modality, encoder, cfg, progress
                )
                features.write_shard(out_dir, k, ids, arrays, quarantined, fingerprint, stored_dim, counts)
                done += len(shard_rows)
    except Exception as caught:  # re-raised below, after telling the other ranks
        error = caught
    progress.close()
    _agree_or_raise(error, world, f"{modality}: another rank failed while extracting")
    seconds = time.perf_counter() - started
    logger.info(
        "%s rank %d: %d shards resumed, %.1f utt/s", modality, rank, resumed, done / max(seconds, 1e-9)
    )
    record, error = None, None
    if rank == 0:
        try:
            record = _merge(
                table,
                modality,
                cfg,
                info,
                stored_dim,
                plan,
                rows,
                out_dir,
                fingerprint_hash,
                fingerprints,
                weights,
                layers,
            )
        except Exception as caught:
            error = caught
    _agree_or_raise(error, world, f"{modality}: rank 0 failed while merging the shards")
    return record


def _agree_or_raise(error: BaseException | None, world: int, message: str) -> None:
    """Raise ``error`` here, or on every rank if any rank failed (so none waits at a barrier)."""
    if world > 1:
        failed = torch.tensor([int(error is not None)])
        torch.distributed.all_reduce(failed, op=torch.distributed.ReduceOp.MAX)
        if failed.item() and error is None:
            raise ExtractionError(message)
    if error is not None:
        raise error


def _merge(
    table: pd.DataFrame, modality: str, cfg: ExtractParams, info: Any, stored_dim: int,
    plan: list[list[int]], rows: list[dict], out_dir: Path, fingerprint_hash: str,
    fingerprints: dict[int, str], weights_hash_value: str, layers: tuple[int, ...] | None = None,
) -> dict:  # fmt: skip
    """Collect every shard's manifest into meta.json, quarantine.csv and verify.json."""
    manifests, quarantined, counts = [], [], {"resampled": 0, "truncated": 0}
    for k, positions in enumerate(plan):
        fingerprint = fingerprints.get(k) or shard_fingerprint(
            info, cfg, modality, [rows[i] for i in positions], fingerprint_hash
        )  # other ranks' shards are fingerprinted here
        manifest = features.complete_shard(out_dir, k, fingerprint)
        if manifest is None:
            raise ExtractionError(f"{out_dir}: shard {k} is missing or incomplete after extraction")
        manifests.append(manifest)
        quarantined += manifest["quarantined"]
        for key, value in manifest.get("counts", {}).items():
            counts[key] += value
    # The output persists across runs (resumption), so drop whatever this run did not produce:
    # shards beyond the plan, other storage formats, temp files of a killed run.
    keep = {f"{features.shard_name(k)}{suffix}" for k in range(len(plan)) for suffix in (".npy", ".json")}
    keep |= {"meta.json", "verify.json", "quarantine.csv"}
    for stale in sorted(p for p in out_dir.iterdir() if p.name not in keep):
        logger.info("removing %s (not part of this extraction)", stale)
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    with open(out_dir / "quarantine.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utt_id", "reason"])
        writer.writerows([q["utt_id"], q["reason"]] for q in quarantined)
    for item in quarantined:
        logger.warning("quarantined %s (%s): %s", item["utt_id"], modality, item["reason"])
    failed = [q for q in quarantined if q["reason"] != NO_PATH.get(modality)]
    if len(failed) > MAX_QUARANTINED_FRACTION * (len(rows) - (len(quarantined) - len(failed))):
        reasons = sorted({q["reason"] for q in failed})[:3]
        raise ExtractionError(
            f"{out_dir}: {len(failed)} of {len(rows)} utterances quarantined (reasons include "
            f"{reasons}); more than half points to a configuration or layout problem, not bad files"
        )
    meta = {
        "modality": modality,
        "model": info.model,
        "weights": info.weights,
        "config_hash": info.config_hash,
        "code_hash": code_hash(),
        "weights_hash": weights_hash_value,
        # which weights: the hub commit they were loaded from, else (local path, built-in spec)
        # their hash; "revision" is what the spec pinned (None: unpinned or not a hub id)
        "revision": info.revision,
        "resolved_weights": f"commit {info.commit}" if info.commit else f"weights_hash {weights_hash_value}",
        "hidden_dim": stored_dim,
        "layer_dim": info.hidden_dim,
        "dtype": "float16",
        "device": _device(cfg)[0],
        "precision": "bf16 autocast" if _device(cfg)[1] else "fp32",
        "layout": features.LAYOUT,
        "count": sum(m["count"] for m in manifests),
        "n_quarantined": len(quarantined),
        "n_resampled": counts["resampled"] if modality == "audio" else None,
        "n_truncated": counts["truncated"] if modality == "audio" else None,
        "encoder_extra": info.extra,
        "params": {k: v for k, v in as_dict(cfg).items() if k != "num_workers"},
        "sample_rate": SAMPLE_RATE if modality == "audio" else None,
        "max_seconds": cfg.audio.max_seconds if modality == "audio" else None,
        "long_audio": cfg.audio.long_audio if modality == "audio" else None,
        "max_len": cfg.text.max_len if modality == "text" else None,
        "layers": None if layers is None else list(layers),
        "num_layers": stored_dim // info.hidden_dim,  # K layer blocks of layer_dim side by side
        "pooling": cfg.audio.pooling if modality == "audio" else None,
        "frames_per_clip": cfg.video.frames_per_clip if modality == "video" else None,
        "embedding": cfg.video.embedding if modality == "video" else None,
        "shards": features.shard_entries(manifests),
    }
    other_modalities = {"text", "audio", "video"} - {modality}
    meta["params"] = {k: v for k, v in meta["params"].items() if k not in other_modalities}
    write_json(out_dir / "meta.json", meta)
    record = features.verify(out_dir, table["utt_id"].tolist(), quarantined)
    write_json(out_dir / "verify.json", record)
    if not record["ok"]:
        raise ExtractionError(f"{out_dir}: verification failed: {record['problems']}")
    logger.info("%s: %d stored, %d quarantined", modality, record["n_stored"], record["n_quarantined"])
    return record
