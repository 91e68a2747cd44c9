"""``mer predict``: label new clips with a trained model directory (:mod:`mer.checkpoints`).

    mer predict MODEL_DIR clip.wav --text "I can't believe it"
    mer predict MODEL_DIR clip.mp4                     # audio and frames from the video
    mer predict MODEL_DIR --csv list.csv --out predictions.csv

The features are made by the extract stage's own code (:func:`mer.extract.encode_utterance`: same
decoding, resampling, truncation / chunking, the shards' float16 rounding) with the encoders the
checkpoint records; a later change of that code or of an encoder's weights is an error (the model
was trained on other features) unless allowed. Class probabilities are averaged over the saved
training seeds (``seed`` for one). A modality with no input is absent: the model scores the
present ones (what absence means per fusion mode: docs/models.md).

In Python (``from mer import load_model, predict``)::

    model = load_model("models/fusion/main")
    predict(model, audio="clip.wav", text="I can't believe it")["label"]

A list (``--csv``) has the metadata table's columns ``utt_id``, ``text``, ``audio_path``,
``video_path`` (optional ``video_start`` / ``video_end``; relative paths from the current
folder); a row whose input is missing, corrupt or empty goes to ``<out>.quarantine.csv`` with the
reason, the others are predicted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mer import extract, media
from mer.checkpoints import TrainedModel, load_model
from mer.devices import resolve_device
from mer.external import is_external
from mer.logs import run_stage, setup_logging
from mer.params import ExtractParams, section_from_mapping
from mer.vocab import MODALITIES

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".flv", ".mpg", ".mpeg"}
INPUT_ERRORS = (media.MediaError, ValueError, OSError, extract.ExtractionError)


class PredictError(ValueError):
    """The model cannot be applied here (an encoder that cannot be built, changed preprocessing)
    or an input is unusable."""


def extract_params(trained: TrainedModel, device: str) -> ExtractParams:
    """The extraction params the model's features were made with (from ``config.json``)."""
    merged: dict[str, Any] = {}
    for modality, record in trained.encoders.items():
        if is_external(record["model"]):  # released features: no encoder params (Predictor refuses)
            continue
        recorded = dict(record.get("params") or {})
        merged[modality] = recorded.pop(modality, {"model": record["model"]})
        # the other extractors of the run (the swap's, the target corpus's) made none of the model's features
        merged.update({k: v for k, v in recorded.items() if k not in (*MODALITIES, "audio_swap", "target")})
    merged["device"] = device
    return section_from_mapping(ExtractParams, merged, "extract")


class Predictor:
    """A trained model with its encoders built once: call :meth:`predict_row` per utterance.

    Args:
        trained: a model directory read by :func:`mer.checkpoints.load_model`.
        device: ``cpu``, ``cuda`` or ``auto``.
        allow_changed_preprocessing: use encoders whose preprocessing code or weights differ from
            the ones recorded at training (the features then differ from the model's inputs).
        modalities: the encoders to build (default: every modality of the model).
    """

    def __init__(
        self, trained: TrainedModel, device: str = "cpu", allow_changed_preprocessing: bool = False,
        modalities: tuple[str, ...] | None = None,
    ):  # fmt: skip
        self.trained = trained
        self.device = str(resolve_device(device, "--device"))
        self.cfg = extract_params(trained, self.device)
        wanted = trained.modalities if modalities is None else modalities
        self.encoders = {m: self._encoder(m, allow_changed_preprocessing) for m in wanted}
        for model in trained.models.values():
            model.to(self.device)

    def _encoder(self, modality: str, allow_changed: bool) -> Any:
        record = self.trained.encoders.get(modality)
        if record is None:
            raise PredictError(f"{self.trained.path}: config.json records no encoder for {modality}")
        spec = record["model"]
        if is_external(spec):
            raise PredictError(
                f"{self.trained.path}: its {modality} features are released ones ({spec}, mer.external); "
                "they cannot be computed for new media: train on an encoder's features to predict"
            )
        try:
            encoder = extract.build_stage_encoder(self.cfg, modality, spec=spec, device=self.device)
        except Exception as error:  # a hub id offline, a missing local path, a missing package
            raise PredictError(
                f"{self.trained.path}: the {modality} encoder {spec!r} cannot be loaded here ({error}); "
                f"fetch it where there is internet (e.g. `huggingface-cli download {spec}`) and run "
                "with HF_HOME pointing at that cache, or a local path to it"
            ) from error
        changed = []
        if record.get("code_hash") and record["code_hash"] != extract.code_hash():
            changed.append(f"preprocessing code {record['code_hash']} -> {extract.code_hash()}")
        weights = extract.weights_hash(encoder)
        if record.get("weights_hash") and record["weights_hash"] != weights:
            changed.append(f"encoder weights {record['weights_hash']} -> {weights}")
        if changed:
            message = (
                f"{self.trained.path}: the {modality} features would not be made as at training "
                f"({'; '.join(changed)}); retrain (dvc repro) or allow it with "
                "--allow-changed-preprocessing"
            )
            if not allow_changed:
                raise PredictError(message)
            logger.warning(message)
        return encoder

    def features(self, row: dict) -> dict[str, np.ndarray]:
        """The stored-form features `(L_m, D_m)` of each modality the row has an input for.

        Raises:
            PredictError: an input is unusable (the reason names the modality and the file);
            the row has no input at all.
        """
        found = {}
        for modality in self.trained.modalities:
            column = {"text": "text", "audio": "audio_path", "video": "video_path"}[modality]
            value = row.get(column)
            if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
                continue
            try:
                found[modality] = extract.encode_utterance(row, modality, self.encoders[modality], self.cfg)
            except INPUT_ERRORS as error:
                raise PredictError(f"{modality}: {error}") from error
        if not found:
            raise PredictError(f"no input for any of the model's modalities {list(self.trained.modalities)}")
        return found

    @torch.inference_mode()
    def score(self, found: dict[str, np.ndarray], seed: int | None = None) -> dict[str, Any]:
        """Run the model (every saved seed, or ``seed``) on one utterance's features; average."""
        models = self.trained.models if seed is None else {seed: self.trained.models[seed]}
        inputs = {m: torch.from_numpy(a.astype(np.float32))[None].to(self.device) for m, a in found.items()}
        masks = {m: torch.ones(1, len(a), dtype=torch.bool, device=self.device) for m, a in found.items()}
        outputs = [model(inputs, masks) for model in models.values()]
        config = self.trained.config
        result: dict[str, Any] = {"modalities": [m for m in self.trained.modalities if m in found]}
        if config.task == "regression":
            result["sentiment"] = float(torch.stack([o.logits[0, 0] for o in outputs]).mean())
        else:
            probs = torch.stack([torch.softmax(o.logits[0].float(), -1) for o in outputs]).mean(0)
            result["label"] = self.trained.classes[int(probs.argmax())]
            result["probabilities"] = dict(zip(self.trained.classes, probs.tolist(), strict=True))
        if outputs[0].gates is not None:
            gates = torch.stack([o.gates[0].float() for o in outputs]).mean(0)
            result["gates"] = dict(zip(self.trained.modalities, gates.tolist(), strict=True))
        if outputs[0].vad is not None:  # the VAD head predicts [-1, 1]-scaled ratings
            vad = torch.stack([o.vad[0].float() for o in outputs]).mean(0)
            result["vad"] = dict(zip(("valence", "arousal", "dominance"), vad.tolist(), strict=True))
        result["seeds"] = list(models)
        return result

    def predict_row(self, row: dict, seed: int | None = None) -> dict[str, Any]:
        """:meth:`features` then :meth:`score`."""
        return self.score(self.features(row), seed)


def _predictor(model: TrainedModel | Predictor | str | Path, device: str, allow_changed: bool) -> Predictor:
    if isinstance(model, Predictor):
        return model
    trained = model if isinstance(model, TrainedModel) else load_model(model)
    key = (device, allow_changed)
    if key not in trained.cache:  # encoders built once per model object: later calls are warm
        trained.cache[key] = Predictor(trained, device, allow_changed)
    return trained.cache[key]


def predict(
    model: TrainedModel | Predictor | str | Path,
    audio: str | Path | None = None,
    text: str | None = None,
    video: str | Path | None = None,
    *,
    seed: int | None = None,
    device: str = "cpu",
    allow_changed_preprocessing: bool = False,
) -> dict[str, Any]:
    """Label one utterance from any of its inputs (a video file also gives the audio when it has
    an audio stream and ``audio`` is not given).

    Returns:
        ``label`` and ``probabilities`` per class (or ``sentiment`` for a regression model),
        ``gates`` per modality where the model gates, ``vad`` where it has that head, the
        ``modalities`` used and the ``seeds`` averaged.

    Raises:
        PredictError: an unusable input or an encoder that cannot be used (the message says why).
    """
    predictor = _predictor(model, device, allow_changed_preprocessing)
    row = {"utt_id": "clip", "text": text}
    if audio is not None:
        row["audio_path"] = str(audio)
    if video is not None:
        row["video_path"] = str(video)
        if audio is None and "audio" in predictor.trained.modalities and media.has_audio_stream(video):
            row["audio_path"] = str(video)
    return predictor.predict_row(row, seed)


def flatten(result: dict[str, Any]) -> dict[str, Any]:
    """One output row: ``pred_label``, ``prob_<class>``, ``gate_<modality>``, ``vad_<dim>``..."""
    row = {"pred_label": result.get("label"), "sentiment_pred": result.get("sentiment")}
    row.update({f"prob_{c}": p for c, p in result.get("probabilities", {}).items()})
    row.update({f"gate_{m}": g for m, g in result.get("gates", {}).items()})
    row.update({f"vad_{d}": v for d, v in result.get("vad", {}).items()})
    row["modalities"] = "+".join(result["modalities"])
    row["seeds"] = len(result["seeds"])
    return {k: v for k, v in row.items() if v is not None}


def predict_table(
    predictor: Predictor, table: pd.DataFrame, seed: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predict every row of a metadata-like table; unusable rows go to the quarantine frame
    (``utt_id``, ``reason``) instead."""
    if "utt_id" not in table:
        table = table.assign(utt_id=[f"row{i}" for i in range(len(table))])
    rows, quarantined = [], []
    for record in table.to_dict("records"):
        try:
            rows.append({"utt_id": record["utt_id"], **flatten(predictor.predict_row(record, seed))})
        except PredictError as error:
            quarantined.append({"utt_id": record["utt_id"], "reason": str(error)})
    return pd.DataFrame(rows), pd.DataFrame(quarantined, columns=["utt_id", "reason"])


def _single_row(args: argparse.Namespace, predictor: Predictor) -> dict:
    row: dict[str, Any] = {"utt_id": "clip", "text": args.text}
    for path in args.media:
        suffix = Path(path).suffix.lower()
        if suffix in AUDIO_SUFFIXES:
            row["audio_path"] = path
        elif suffix in VIDEO_SUFFIXES:
            row["video_path"] = path
        else:
            raise PredictError(
                f"{path}: unknown media type {suffix!r}; pass it as --audio or --video "
                f"(audio: {sorted(AUDIO_SUFFIXES)}, video: {sorted(VIDEO_SUFFIXES)})"
            )
    row.update({k: v for k, v in (("audio_path", args.audio), ("video_path", args.video)) if v})
    if "audio_path" not in row and "video_path" in row and "audio" in predictor.trained.modalities:
        if media.has_audio_stream(row["video_path"]):
            row["audio_path"] = row["video_path"]
    return row


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="mer predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", help="a trained model directory, e.g. models/fusion/main")
    parser.add_argument("media", nargs="*", help="an audio and/or a video file of one utterance")
    parser.add_argument("--text", help="the utterance's transcript")
    parser.add_argument("--audio", help="the audio file (any FFmpeg-readable format)")
    parser.add_argument("--video", help="the video file")
    parser.add_argument("--csv", help="many utterances: a table with text / audio_path / video_path")
    parser.add_argument("--out", help="with --csv: where to write the predictions (CSV)")
    parser.add_argument("--seed", type=int, help="one training seed's model instead of their average")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument(
        "--allow-changed-preprocessing", action="store_true",
        help="use encoders whose code or weights changed since training (features will differ)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if bool(args.csv) == bool(args.media or args.text or args.audio or args.video):
        parser.error("give one utterance (media files and/or --text) or --csv, not both or neither")
    if args.csv and not args.out:
        parser.error("--csv needs --out")
    started = time.perf_counter()
    trained = load_model(args.model_dir, seed=args.seed)
    predictor = Predictor(trained, args.device, args.allow_changed_preprocessing)
    if args.csv:
        table = pd.read_csv(args.csv)
        frame, quarantined = predict_table(predictor, table, args.seed)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        quarantine = out.with_suffix(".quarantine.csv")
        quarantined.to_csv(quarantine, index=False)
        print(
            f"{len(frame)} utterances predicted -> {out}; {len(quarantined)} quarantined -> {quarantine} "
            f"({time.perf_counter() - started:.1f} s)"
        )
        return
    result = predictor.predict_row(_single_row(args, predictor), args.seed)
    print(pd.Series(flatten(result)).to_string())


class _CallableModule(types.ModuleType):
    """``from mer import predict`` is this module once something imported it (the import system
    binds the submodule over the package's lazy attribute), so calling it is :func:`predict`."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


def cli() -> None:
    """The ``mer`` console script: ``mer predict ...``."""
    if len(sys.argv) < 2 or sys.argv[1] != "predict":
        sys.exit(
            "usage: mer predict MODEL_DIR [MEDIA ...] [--text T] | --csv LIST --out OUT (see mer predict -h)"
        )
    setup_logging()
    run_stage(lambda: main(sys.argv[2:]), stage="predict")


if __name__ == "__main__":
    setup_logging()
    run_stage(main, stage="predict")
