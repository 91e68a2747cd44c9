"""Extraction benchmark: the seeds' per-utterance loop vs mer's extract path, side by side.

Seed loop (seed 000's scripts): one utterance per encoder call, text padded to ``max_len=128``,
audio zero-padded to ``max_seconds=10``, fp32, and the padded fp32 arrays stored. mer's path:
:func:`mer.extract.extract_modality` (length-bucketed batches, no padding beyond each batch's
longest item, inference mode, media decoded in a DataLoader worker, unpadded float16 shards).
Both read the same utterances from disk with the same encoder weights.

Printed per modality: utterances/s of each and their ratio, stored bytes per utterance and their
ratio, the largest absolute difference and the smallest per-frame cosine between mer's stored
features and the seed loop's (unpadded positions), and achieved FLOP/s of mer's path as a
fraction of this device's fp32 matmul peak, measured in the same run.

    .venv/bin/python bench/extract.py [--utterances 96] [--seconds 3 5]

Targets on a 2-core CPU: text >= 5x, audio >= 2.5x utt/s; storage <= 1/8 (text), <= 1/4 (audio);
cosine >= 0.999.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mer import media
from mer.corpora import synthetic
from mer.extract import build_stage_encoder, extract_modality
from mer.features import FeatureStore
from mer.params import ExtractParams, SyntheticParams

SEED_MAX_LEN = 128
SEED_MAX_SECONDS = 10.0
SAMPLE_RATE = 16000


def peak_matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul FLOP/s of this device (best of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def _stored_bytes(array: np.ndarray) -> int:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.tell()


@torch.inference_mode()
def seed_loop(modality: str, encoder, table) -> tuple[float, dict[str, np.ndarray], int]:
    """The seeds' loop; returns seconds, unpadded features (for comparison) and stored bytes."""
    outputs, stored = {}, 0
    started = time.perf_counter()
    for row in table.itertuples():
        if modality == "text":
            batch = encoder.tokenizer(
                [row.text],
                padding="max_length",
                truncation=True,
                max_length=SEED_MAX_LEN,
                return_tensors="pt",
            )
            hidden = encoder.model(**batch).last_hidden_state[0].numpy()  # (128, D) fp32, padded
            real = int(batch["attention_mask"].sum())
        elif modality == "audio":
            waveform, _ = media.read_audio(row.audio_path, SAMPLE_RATE, SEED_MAX_SECONDS)
            padded = np.zeros(int(SEED_MAX_SECONDS * SAMPLE_RATE), dtype=np.float32)
            padded[: len(waveform)] = waveform
            mask = np.zeros_like(padded, dtype=np.int64)
            mask[: len(waveform)] = 1
            hidden = (
                encoder.model(torch.from_numpy(padded)[None], attention_mask=torch.from_numpy(mask)[None])
                .last_hidden_state[0]
                .numpy()
            )  # (T'_max, D) fp32, padded
            real = encoder.output_lengths([len(waveform)])[0]
        else:
            frames = media.read_video_frames(row.video_path, 8)
            output = encoder.model(pixel_values=encoder.preprocess(frames))
            projected = encoder.embedding == "projected"
            hidden = (output.image_embeds if projected else output.pooler_output).numpy()  # (frames, D)
            real = len(hidden)
        stored += _stored_bytes(hidden.astype(np.float32))
        outputs[row.utt_id] = hidden[:real]
    return time.perf_counter() - started, outputs, stored


def mer_flops(modality: str, encoder, cfg: ExtractParams, table) -> float:
    """FLOPs of mer's encoder calls on ``table`` (counted in a separate, untimed pass)."""
    from mer.extract import _encode, bucket_batches, length_proxy, load_input

    rows = table.to_dict("records")
    inputs = [load_input(row, modality, cfg)[0] for row in rows]
    lengths = [length_proxy(row, modality, cfg) for row in rows]
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        for batch in bucket_batches(lengths, cfg.batch_size, cfg.batch_budget):
            _encode(encoder, modality, [inputs[i] for i in batch], cfg)
    return float(counter.get_total_flops())


def compare(reference: dict[str, np.ndarray], store: FeatureStore) -> tuple[float, float]:
    max_abs, min_cos = 0.0, 1.0
    for utt_id, expected in reference.items():
        got = np.asarray(store[utt_id], dtype=np.float32)
        assert got.shape == expected.shape, (utt_id, got.shape, expected.shape)
        max_abs = max(max_abs, float(np.abs(got - expected).max()))
        cos = (got * expected).sum(-1) / (
            np.linalg.norm(got, axis=-1) * np.linalg.norm(expected, axis=-1) + 1e-12
        )
        min_cos = min(min_cos, float(cos.min()))
    return max_abs, min_cos


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--utterances", type=int, default=96)
    parser.add_argument("--seconds", type=float, nargs=2, default=(3.0, 5.0), help="clip length range")
    parser.add_argument("--modalities", nargs="+", default=["text", "audio", "video"])
    parser.add_argument(
        "--video-embedding", choices=("pooler", "projected"), default="pooler",
        help="extract.video.embedding: CLIP pooler_output or the projected image_embeds (seed 004)",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    work = Path(tempfile.mkdtemp(prefix="mer-bench-"))
    speakers = max(1, args.utterances // 24)
    corpus = SyntheticParams(
        train_speakers=speakers, dev_speakers=1, test_speakers=1, utterances_per_speaker=24,
        min_seconds=args.seconds[0], max_seconds=args.seconds[1],
    )  # fmt: skip
    synthetic.generate(corpus, "source", work / "raw")
    table = synthetic.load(work / "raw", "bench").iloc[: args.utterances]
    cfg = ExtractParams(
        text=dataclasses.replace(ExtractParams().text, max_len=SEED_MAX_LEN),
        video=dataclasses.replace(ExtractParams().video, embedding=args.video_embedding),
    )
    peak = peak_matmul_flops()
    print(f"device: cpu, {torch.get_num_threads()} threads, fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{len(table)} utterances, audio {args.seconds[0]:.0f}-{args.seconds[1]:.0f} s\n")
    header = (
        f"{'modality':8s} {'seed utt/s':>10s} {'mer utt/s':>9s} {'speed-up':>8s} {'seed B/utt':>10s} "
        f"{'mer B/utt':>9s} {'storage':>8s} {'max|diff|':>9s} {'min cos':>8s} {'mer % peak':>10s}"
    )
    print(header)
    for modality in args.modalities:
        encoder = build_stage_encoder(cfg, modality)
        seed_loop(modality, encoder, table.iloc[:2])  # warm-up (one-time allocations) for both paths
        extract_modality(table.iloc[:2], modality, cfg, work / "warmup" / modality, encoder=encoder)
        seed_seconds, reference, seed_bytes = seed_loop(modality, encoder, table)
        out = work / "features" / modality
        started = time.perf_counter()
        extract_modality(table, modality, cfg, out, encoder=encoder)
        mer_seconds = time.perf_counter() - started
        mer_bytes = sum(p.stat().st_size for p in out.glob("shard-*"))
        max_abs, min_cos = compare(reference, FeatureStore(out))
        fraction = mer_flops(modality, encoder, cfg, table) / mer_seconds / peak
        n, speedup = len(table), seed_seconds / mer_seconds
        print(
            f"{modality:8s} {n / seed_seconds:10.1f} {n / mer_seconds:9.1f} {speedup:7.2f}x "
            f"{seed_bytes / n:10.0f} {mer_bytes / n:9.0f} {mer_bytes / seed_bytes:8.3f} {max_abs:9.4f} "
            f"{min_cos:8.5f} {100 * fraction:9.1f}%"
        )


if __name__ == "__main__":
    main()
