"""RAVDESS loader: ``Actor_XX/`` folders of clips whose names are their codes.

Layout (``root`` is ``Audio_Speech_Actors_01-24/``)::

    Actor_{01..24}/MM-VV-EE-II-SS-RR-AA.wav   e.g. Actor_12/03-01-05-01-02-01-12.wav

the seven two-digit codes being modality (03 audio-only; 01 full AV and 02 video-only are the
mp4 releases), vocal channel (01 speech, 02 song), emotion (01 neutral .. 08 surprised),
intensity (01 normal, 02 strong), statement (01 "Kids are talking by the door", 02 "Dogs are
sitting by the door"), repetition (01, 02) and actor (odd = male).

One row per wav: ``utt_id`` is the file stem, ``speaker`` and ``session`` the actor folder
(``Actor_12``), ``text`` the statement, ``split`` None (no official split; the protocol assigns
actor-disjoint splits), ``start`` 0 and ``end`` / ``duration`` the clip length. ``video_path``
is None (the audio release has no video) unless an mp4 with the same remaining codes lies
beside the wav: the full-AV ``01-...mp4`` preferred, else the video-only ``02-...mp4``.

Extra columns: ``raw_label`` (emotion code), ``gender`` (male / female), ``intensity`` (normal /
strong), ``statement`` (code, "01" / "02"), ``repetition`` (int), ``vocal_channel`` (speech /
song).

Quarantine: a name that does not parse, or whose actor is not its folder's -> ``bad_row``; an
emotion outside the label map (calm ``02`` under ``shared4``) -> ``label_outside_map``; an
unreadable or empty wav, or an unreadable mp4 -> ``corrupt_media``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mer.corpora import common
from mer.corpora.labels import label_map
from mer.schema import COLUMNS

logger = logging.getLogger(__name__)

CORPUS = "ravdess"
#: Labels beside the emotion (mer.vocab.LABEL_KINDS): none (no sentiment, no VAD ratings)
LABEL_KINDS: tuple[str, ...] = ()
DEFAULT_LABELS = "8class"
RELEASE_DIR = "Audio_Speech_Actors_01-24"
MODALITY_CODES = {"01": "full_av", "02": "video_only", "03": "audio_only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
REPETITIONS = ("01", "02")
EXTRA_COLUMNS = ("raw_label", "gender", "intensity", "statement", "repetition", "vocal_channel")
_ACTOR_DIR = re.compile(r"Actor_(\d{2})")
_CODE = re.compile(r"\d{2}")
# column dtypes other than str; nullable text as object so a missing value stays None
_DTYPES = {
    **dict.fromkeys(("valence", "arousal", "dominance", "sentiment", "start", "end", "duration"), "float64"),
    **dict.fromkeys(("split", "video_path"), object),
    "label_id": "int64",
    "repetition": "int64",
}


def _actor_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and _ACTOR_DIR.fullmatch(p.name))


def check_layout(root: Path) -> None:
    """Raise :class:`common.LayoutError` unless ``root`` holds RAVDESS ``Actor_XX/`` folders."""
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise common.LayoutError(
            f"{root}: not found; expected the RAVDESS {RELEASE_DIR}/ folder of Actor_XX/"
        )
    if _ACTOR_DIR.fullmatch(root.name):
        raise common.LayoutError(
            f"{root}: this is one actor's folder; point corpora.ravdess.root at {RELEASE_DIR}/ (its parent)"
        )
    if _actor_dirs(root):
        return
    if (root / RELEASE_DIR).is_dir():
        raise common.LayoutError(
            f"{root / 'Actor_01'}: not found; {root} holds {RELEASE_DIR}/: point corpora.ravdess.root at "
            f"{root / RELEASE_DIR}"
        )
    raise common.LayoutError(
        f"{root / 'Actor_01'}: not found; expected the RAVDESS {RELEASE_DIR}/ folder of Actor_XX/ folders "
        "of MM-VV-EE-II-SS-RR-AA.wav"
    )


def parse_name(stem: str) -> dict[str, str]:
    """The seven codes of a clip name; ValueError naming the field that does not parse.

    The emotion code is only checked for form: whether it is in the label map is decided later.

    >>> parse_name("03-01-05-01-02-01-12")["emotion"]
    '05'
    """
    fields = stem.split("-")
    names = ("modality", "vocal_channel", "emotion", "intensity", "statement", "repetition", "actor")
    if len(fields) != len(names):
        raise ValueError(
            f"{len(fields)} fields, expected 7 "
            "(modality-channel-emotion-intensity-statement-repetition-actor)"
        )
    codes = dict(zip(names, fields, strict=True))
    allowed = {"modality": MODALITY_CODES, "vocal_channel": VOCAL_CHANNELS, "intensity": INTENSITIES,
               "statement": STATEMENTS, "repetition": REPETITIONS}  # fmt: skip
    for name, code in codes.items():
        if not _CODE.fullmatch(code):
            raise ValueError(f"{name} {code!r} is not a two-digit code")
        if name in allowed and code not in allowed[name]:
            raise ValueError(f"unknown {name} code {code!r}; expected one of {sorted(allowed[name])}")
    return codes


def load(root: Path, labels: str = DEFAULT_LABELS) -> common.LoadResult:
    """Load RAVDESS under ``root`` with the label map ``labels`` (``8class`` or ``shared4``)."""
    root = Path(os.path.abspath(root))  # absolute paths in the table, symlinks kept (no resolve)
    check_layout(root)
    mapping = label_map(CORPUS, labels)
    quarantine = common.Quarantine(CORPUS)
    wavs = [wav for folder in _actor_dirs(root) for wav in sorted(folder.glob("*.wav"))]
    rows = []
    for wav in tqdm(wavs, desc=CORPUS, unit="utt"):
        utt_id, folder = wav.stem, wav.parent.name
        try:
            codes = parse_name(utt_id)
            if codes["modality"] != "03":
                raise ValueError(f"modality {codes['modality']} in a .wav; audio-only clips are 03")
            if folder != f"Actor_{codes['actor']}":
                raise ValueError(f"actor {codes['actor']} in the name but the file is in {folder}/")
        except ValueError as exc:
            quarantine.add(utt_id, "bad_row", f"{folder}/{wav.name}: {exc}")
            continue
        label = mapping.map(codes["emotion"])
        if label is None:
            quarantine.add(utt_id, "label_outside_map", codes["emotion"])
            continue
        if not common.check_media(wav, utt_id, quarantine, need_audio=True):
            continue
        video = _video_of(wav)
        if video is not None and not common.check_media(video, utt_id, quarantine, need_video=True):
            continue
        duration = common.probe_media(wav).duration
        rows.append({
            "utt_id": utt_id, "corpus": CORPUS, "speaker": folder, "session": folder, "split": None,
            "label": label, "label_id": mapping.label_id(label), "valence": np.nan, "arousal": np.nan,
            "dominance": np.nan, "sentiment": np.nan, "text": STATEMENTS[codes["statement"]],
            "audio_path": str(wav), "video_path": str(video) if video is not None else None,
            "start": 0.0, "end": duration, "duration": duration,
            "raw_label": codes["emotion"], "gender": "male" if int(codes["actor"]) % 2 else "female",
            "intensity": INTENSITIES[codes["intensity"]], "statement": codes["statement"],
            "repetition": int(codes["repetition"]), "vocal_channel": VOCAL_CHANNELS[codes["vocal_channel"]],
        })  # fmt: skip
    result = common.LoadResult(_frame(rows), quarantine.frame(), {})  # nothing to repair in RAVDESS
    logger.info("%s: %s", CORPUS, result.counts())
    return result


def _video_of(wav: Path) -> Path | None:
    """The mp4 of the same take beside ``wav``: full AV (01) preferred, else video-only (02)."""
    rest = wav.stem.partition("-")[2]
    for modality in ("01", "02"):
        video = wav.with_name(f"{modality}-{rest}.mp4")
        if video.is_file():
            return video
    return None


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> the table with the contract dtypes (also when every clip was quarantined)."""
    columns = [*COLUMNS, *EXTRA_COLUMNS]
    table = pd.DataFrame(
        {
            column: pd.Series([row[column] for row in rows], dtype=_DTYPES.get(column, "str"))
            for column in columns
        }
    )
    return table.sort_values("utt_id", kind="stable").reset_index(drop=True)
