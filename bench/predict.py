"""Latency of ``mer predict``: one 3-s clip with a transcript and an 8-frame video.

Writes a 3-s 16 kHz wav (a voiced harmonic signal) and an 8-frame mp4 (the synthetic corpus's
cartoon face), then times, in this process:

- cold: ``load_model`` + building the recorded encoders + the first prediction;
- warm: each later prediction (median and 90th percentile of ``--repeats``), split into decoding +
  encoding per modality and the model (every saved seed);

and prints milliseconds per clip and the real-time factor (processing seconds / 3 s of audio).
A separate process times ``import mer.predict`` (torch, transformers) once.

    .venv/bin/python bench/predict.py [--model models/fusion/main] [--repeats 20] [--device cpu]

Target on the 2-core CPU with the default encoders: warm <= 150 ms per 3-s clip.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECONDS = 3.0
FRAMES = 8
TEXT = "I can't believe you did that again, honestly."


def write_clip(folder: Path) -> tuple[Path, Path]:
    """A 3-s wav and an 8-frame mp4 from the synthetic corpus's generator."""
    from mer.corpora import synthetic
    from mer.params import SyntheticParams

    rng = np.random.default_rng(0)
    style = synthetic.domain_style("source", 0.0)
    speaker = synthetic.speakers_of(SyntheticParams(), "source")[0]
    signal = synthetic.synthesize_audio(
        rng, "anger", "clean", int(SECONDS * 16000), 16000, speaker, style, -20.0
    )
    wav, mp4 = folder / "clip.wav", folder / "clip.mp4"
    synthetic._write_wav(wav, signal, 16000)
    synthetic._write_mp4(mp4, synthetic.render_face(rng, "anger", "clear", FRAMES, 64, speaker, style))
    return wav, mp4


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models/fusion/main")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mer.predict"], check=True)
    import_seconds = time.perf_counter() - started

    import torch

    from mer.checkpoints import load_model
    from mer.predict import Predictor

    folder = Path(tempfile.mkdtemp(prefix="mer-bench-predict-"))
    wav, mp4 = write_clip(folder)
    row = {"utt_id": "clip", "text": TEXT, "audio_path": str(wav), "video_path": str(mp4)}

    started = time.perf_counter()
    trained = load_model(args.model)
    predictor = Predictor(trained, args.device)
    loaded = time.perf_counter() - started
    result = predictor.predict_row(row)
    cold = time.perf_counter() - started

    warm, parts = [], {m: [] for m in trained.modalities} | {"model": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        found = {}
        for modality in trained.modalities:
            t1 = time.perf_counter()
            found.update(predictor.features({**row, **{k: None for k in _other_inputs(modality)}}))
            parts[modality].append(time.perf_counter() - t1)
        t1 = time.perf_counter()
        predictor.score(found)
        parts["model"].append(time.perf_counter() - t1)
        warm.append(time.perf_counter() - t0)

    ms = 1000.0
    median = statistics.median(warm)
    print(
        f"model: {args.model} ({len(trained.seeds)} seeds); device {args.device}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        "encoders: "
        + ", ".join(f"{m} {e['model']} ({e.get('weights')})" for m, e in trained.encoders.items())
    )
    print(
        f"clip: {SECONDS:.0f} s audio, {FRAMES}-frame video, {len(TEXT.split())}-word transcript "
        f"-> {result.get('label')}"
    )
    print(f"import mer.predict (fresh process): {import_seconds * ms:8.0f} ms")
    print(f"cold: load model + encoders       : {loaded * ms:8.0f} ms")
    print(f"cold: load + first prediction     : {cold * ms:8.0f} ms   real-time factor {cold / SECONDS:.2f}")
    print(
        f"warm: per clip (median of {args.repeats})    : {median * ms:8.1f} ms   "
        f"real-time factor {median / SECONDS:.3f}"
        f"   (p90 {np.percentile(warm, 90) * ms:.1f} ms)"
    )
    for name, values in parts.items():
        label = f"decode + encode {name}" if name != "model" else f"model ({len(trained.seeds)} seeds)"
        print(f"  {label:32s}: {statistics.median(values) * ms:8.1f} ms")
    print(f"target warm <= 150 ms: {'met' if median * ms <= 150 else 'NOT met'}")


def _other_inputs(modality: str) -> list[str]:
    """The row's input columns of the other modalities (blanked to time one modality alone)."""
    columns = {"text": "text", "audio": "audio_path", "video": "video_path"}
    return [c for m, c in columns.items() if m != modality]


if __name__ == "__main__":
    main()
