"""Released features -> mer's ragged shards, ``meta.json``, ``quarantine.csv`` and ``verify.json``.

:func:`import_features` is what the extract stage runs for an ``external:`` spec (one corpus role x
modality); :func:`read_features` is its in-memory half (matched, cleaned ``(T, D)`` arrays in table
order), for code that wants the features without writing a feature folder.

The output folder is laid out exactly as an encoder's (:mod:`mer.features`), shards of
``extract.shard_size`` utterances in metadata order, plus ``unmatched_features.csv`` (the file's
entries no utterance used). ``meta.json`` says ``weights: "external"`` and records the source:
spec, path, sha256, format, feature dim, what the file says about itself, and the counts.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mer import features
from mer.external import FeatureSource, Utterance
from mer.external.csd import CsdSource
from mer.external.mmsa_pickle import MmsaPickleSource
from mer.files import write_json
from mer.params import ExtractParams, external_source

logger = logging.getLogger(__name__)

MAX_QUARANTINED_FRACTION = 0.5  # as mer.extract: above this, the stage fails
FLOAT16_MAX = float(np.finfo(np.float16).max)
UNMATCHED_FILE = "unmatched_features.csv"
NONFINITE_COUNTS = {"nonfinite_frames_dropped": 0, "utterances_with_nonfinite_frames": 0}


class ExternalImportError(RuntimeError):
    """Too many utterances quarantined, or the written shards fail verification."""


@dataclass
class Imported:
    """Matched, cleaned released features for a table (:func:`read_features`).

    Attributes:
        ids (list[str]): the stored utterances, in table order.
        arrays (list[np.ndarray]): their float16 ``(T_i, D)`` frames (the shards' dtype), finite.
        quarantined (list[dict]): ``{"utt_id", "reason"}``, in table order.
        unmatched (list[str]): the file's entries no utterance used.
        feature_dim (int): D.
        source (dict): path, sha256, format and what the file says about itself.
        counts (dict[str, int]): dropped non-finite frames, match kinds, ...
    """

    ids: list[str]
    arrays: list[np.ndarray]
    quarantined: list[dict]
    unmatched: list[str]
    feature_dim: int
    source: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _value(row: dict, column: str) -> Any:
    value = row.get(column)
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def utterances_of(table: pd.DataFrame) -> list[Utterance]:
    """The table's rows as the readers match them: video id from ``video_id`` (MMSA) or
    ``dialog`` (IEMOCAP), clip from ``clip_id``, interval from ``video_start`` / ``video_end``
    else ``start`` / ``end`` (none when either end is missing)."""
    utterances = []
    for row in table.to_dict("records"):
        video = _value(row, "video_id") or _value(row, "dialog")
        clip = _value(row, "clip_id")
        start, end = _value(row, "video_start"), _value(row, "video_end")
        if start is None or end is None:
            start, end = _value(row, "start"), _value(row, "end")
        if start is None or end is None:
            start = end = None
        utterances.append(Utterance(
            str(row["utt_id"]), None if video is None else str(video), None if clip is None else str(clip),
            None if start is None else float(start), None if end is None else float(end),
        ))  # fmt: skip
    return utterances


def clean(frames: np.ndarray, counts: dict[str, int]) -> np.ndarray | str:
    """An utterance's frames without its non-finite rows (counted in ``counts``) as float16, the
    shards' dtype, or why it is quarantined (no finite frame, values beyond float16)."""
    frames = np.asarray(frames, dtype=np.float64)  # (T, D)
    finite = np.isfinite(frames).all(axis=1)  # (T,)
    if not finite.any():
        return f"no finite frame: all {len(finite)} frames have NaN/Inf values"
    frames = frames[finite]
    peak = float(np.abs(frames).max())
    if peak > FLOAT16_MAX:
        return f"values up to {peak:.4g} beyond float16's range ({FLOAT16_MAX:.0f}), the shards' dtype"
    if not finite.all():  # counted for the stored utterances only
        counts["nonfinite_frames_dropped"] += int((~finite).sum())
        counts["utterances_with_nonfinite_frames"] += 1
    return frames.astype(features.DTYPE)


def open_source(table: pd.DataFrame, modality: str, spec: str, key: str | None = None) -> tuple[
    FeatureSource, list[Utterance], dict[str, Any]
]:  # fmt: skip
    """Open ``spec``'s file for ``table``'s utterances: the source, the utterances and the
    description ``meta.json`` records (spec, path, sha256, format)."""
    key = key or f"extract.{modality}.model"
    parsed = external_source(key, spec)
    if parsed is None:
        raise ValueError(f"{key}: {spec!r} is not an external:<path> spec")
    path, kind = parsed
    utterances = utterances_of(table)
    logger.info("%s: reading %s features from %s (%s)", key, modality, path, kind)
    source = CsdSource(path, utterances) if kind == "csd" else MmsaPickleSource(path, modality)
    described = {"spec": spec, "path": str(path.absolute()), "sha256": features.sha256(path), "format": kind}
    return source, utterances, described


def _matched(
    source: FeatureSource, utterances: list[Utterance], counts: dict[str, int]
) -> Iterator[tuple[str, np.ndarray | str]]:
    """(utt_id, cleaned frames or quarantine reason) per utterance, in order."""
    for utterance in utterances:
        frames = source.match(utterance)
        yield utterance.utt_id, frames if isinstance(frames, str) else clean(frames, counts)


def read_features(table: pd.DataFrame, modality: str, spec: str, key: str | None = None) -> Imported:
    """Read ``spec``'s released features for ``table``'s utterances into memory (nothing written;
    for a corpus role too large for memory, :func:`import_features` writes shard by shard).

    Args:
        table: a metadata table (one corpus role).
        modality: ``text``, ``audio`` or ``video`` (which array of an MMSA pickle).
        spec: ``external:<path>`` (``.csd`` or ``.pkl``).
        key: the params key named in errors (default ``extract.<modality>.model``).

    Raises:
        ParamsError: the spec names a missing file or an unknown format.
        ExternalFormatError: the file is not in its format.
    """
    source, utterances, described = open_source(table, modality, spec, key)
    counts = dict(NONFINITE_COUNTS)
    ids, arrays, quarantined = [], [], []
    with source:
        for utt_id, frames in _matched(source, utterances, counts):
            if isinstance(frames, str):
                quarantined.append({"utt_id": utt_id, "reason": frames})
            else:
                ids.append(utt_id)
                arrays.append(frames)
        described |= {"feature_dim": source.feature_dim, **source.source}
        return Imported(
            ids,
            arrays,
            quarantined,
            source.unmatched(),
            source.feature_dim,
            described,
            {**source.counts, **counts},
        )


def code_hash() -> str:
    """sha256 (16 hex) of the import code (this package and the shard storage)."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.glob("*.py")):
        digest.update(path.read_bytes())
    digest.update((package.parent / "features.py").read_bytes())
    return digest.hexdigest()[:16]


def import_features(
    table: pd.DataFrame,
    modality: str,
    spec: str,
    cfg: ExtractParams,
    out_dir: str | Path,
    key: str | None = None,
) -> dict:
    """Write ``spec``'s released features for ``table`` into ``out_dir`` as mer's feature folder.

    Returns:
        The verification record (also in ``out_dir/verify.json``).

    Raises:
        ParamsError / ExternalFormatError: see :func:`read_features`.
        ExternalImportError: more than half of the utterances quarantined (a wrong file or corpus),
            or the written shards fail verification.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source, utterances, described = open_source(table, modality, spec, key)
    counts = dict(NONFINITE_COUNTS)
    quarantined: list[dict] = []
    manifests = []
    stored = 0
    with source:
        made_by = f"{described['sha256']}:{spec}:{code_hash()}"
        fingerprint = hashlib.sha256(made_by.encode()).hexdigest()[:32]
        matched = _matched(source, utterances, counts)
        # shards of cfg.shard_size metadata rows, as the encoder path plans them, one in memory
        for k in range(-(-len(utterances) // cfg.shard_size)):
            ids, arrays, shard_quarantined = [], [], []
            for utt_id, frames in itertools.islice(matched, cfg.shard_size):
                if isinstance(frames, str):
                    shard_quarantined.append({"utt_id": utt_id, "reason": frames})
                else:
                    ids.append(utt_id)
                    arrays.append(frames)
            manifests.append(features.write_shard(
                out_dir, k, ids, arrays, shard_quarantined, fingerprint, source.feature_dim
            ))  # fmt: skip
            quarantined += shard_quarantined
            stored += len(ids)
        unmatched = source.unmatched()
        dim = source.feature_dim
        described |= {"feature_dim": dim, **source.source}
        counts = {**source.counts, **counts}
    all_ids = [u.utt_id for u in utterances]
    for item in quarantined:
        logger.warning("quarantined %s (%s, external): %s", item["utt_id"], modality, item["reason"])
    if unmatched:
        logger.warning(
            "%s: %d entries match no utterance of the metadata (e.g. %s); listed in %s",
            described["path"], len(unmatched), unmatched[:3], UNMATCHED_FILE,
        )  # fmt: skip
    if len(quarantined) > MAX_QUARANTINED_FRACTION * len(all_ids):
        reasons = sorted({q["reason"] for q in quarantined})[:3]
        raise ExternalImportError(
            f"{out_dir}: {len(quarantined)} of {len(all_ids)} utterances have no usable features in "
            f"{described['path']} (reasons include {reasons}); more than half points to a file "
            f"of another corpus or modality, not bad entries: check {key or f'extract.{modality}.model'}"
        )
    keep = {m["file"] for m in manifests} | {f"{features.shard_name(m['index'])}.json" for m in manifests}
    keep |= {"meta.json", "verify.json", "quarantine.csv", UNMATCHED_FILE}
    for stale in sorted(p for p in out_dir.iterdir() if p.name not in keep):  # a persisted output
        logger.info("removing %s (not part of this import)", stale)
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    with open(out_dir / "quarantine.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utt_id", "reason"])
        writer.writerows([q["utt_id"], q["reason"]] for q in quarantined)
    with open(out_dir / UNMATCHED_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["entry", "reason"])
        writer.writerows([entry, "no utterance of the metadata matches it"] for entry in unmatched)
    config = f"{described['format']}:{described.get('key')}:{dim}"
    meta = {
        "modality": modality,
        "model": spec,
        "weights": "external",
        "config_hash": hashlib.sha256(config.encode()).hexdigest()[:16],
        "code_hash": code_hash(),
        "weights_hash": described["sha256"][:16],
        "revision": None,
        "resolved_weights": f"external file sha256 {described['sha256']}",
        "hidden_dim": dim,
        "layer_dim": dim,
        "dtype": "float16",
        "device": "cpu",
        "precision": "released features, stored as float16",
        "layout": features.LAYOUT,
        "count": stored,
        "n_quarantined": len(quarantined),
        "n_unmatched_features": len(unmatched),
        "unmatched_examples": unmatched[:20],
        "n_resampled": None,
        "n_truncated": None,
        "counts": counts,
        "source": described,
        "encoder_extra": {"format": described["format"], "source_sha256": described["sha256"]},
        "params": {"shard_size": cfg.shard_size, modality: {"model": spec}},
        "sample_rate": None,
        "max_seconds": None,
        "long_audio": None,
        "max_len": None,
        "layers": None,
        "frames_per_clip": None,
        "embedding": None,
        "shards": features.shard_entries(manifests),
    }
    write_json(out_dir / "meta.json", meta)
    record = features.verify(out_dir, all_ids, quarantined)
    record["n_unmatched_features"] = len(unmatched)
    write_json(out_dir / "verify.json", record)
    if not record["ok"]:
        raise ExternalImportError(f"{out_dir}: verification failed: {record['problems']}")
    logger.info(
        "%s (external %s): %d stored, %d quarantined, %d entries unmatched, %d non-finite frames dropped",
        modality, described["format"], record["n_stored"], record["n_quarantined"], len(unmatched),
        counts["nonfinite_frames_dropped"],
    )  # fmt: skip
    return record
