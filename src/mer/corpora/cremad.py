"""CREMA-D loader: ``AudioWAV/`` clips named by their codes, demographics joined per actor.

Layout (``root`` is the folder that holds these)::

    AudioWAV/{ActorID}_{Sentence}_{Emotion}_{Level}.wav   e.g. 1001_DFA_ANG_XX.wav
    VideoFlash/<same stem>.flv                            optional
    VideoDemographics.csv                                 ActorID, Age, Sex, Race, Ethnicity

One row per wav: ``utt_id`` is the file stem, ``speaker`` and ``session`` the actor id, ``text``
the sentence the code stands for, ``split`` None (CREMA-D has no official split; the protocol
assigns actor-disjoint splits), ``start`` 0 and ``end`` / ``duration`` the clip length.
``video_path`` is the matching flv when ``VideoFlash/`` has one, else None (a missing flv is
not a defect).

Extra columns: ``raw_label`` (emotion code), ``sentence_code``, ``intensity`` (LO / MD / HI /
XX), ``age`` (float), ``sex``, ``race``, ``ethnicity`` (None where the actor is missing from
the demographics file; such rows are kept and counted in ``repairs["missing_demographics"]``).

Quarantine: a file name that does not parse (field count, actor, sentence or level code) ->
``bad_row``; an emotion outside the label map (``DIS``, ``FEA`` under ``shared4``) ->
``label_outside_map``; an unreadable or empty wav, or an unreadable flv -> ``corrupt_media``.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mer.corpora import common
from mer.corpora.labels import label_map
from mer.schema import COLUMNS

logger = logging.getLogger(__name__)

CORPUS = "cremad"
#: Labels beside the emotion (mer.vocab.LABEL_KINDS): none (no sentiment, no VAD ratings)
LABEL_KINDS: tuple[str, ...] = ()
DEFAULT_LABELS = "6class"
AUDIO_DIR, VIDEO_DIR, DEMOGRAPHICS = "AudioWAV", "VideoFlash", "VideoDemographics.csv"
DEMOGRAPHIC_COLUMNS = ("ActorID", "Age", "Sex", "Race", "Ethnicity")
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
INTENSITIES = ("LO", "MD", "HI", "XX")
EXTRA_COLUMNS = ("raw_label", "sentence_code", "intensity", "age", "sex", "race", "ethnicity")
_ACTOR = re.compile(r"\d{4}")
_LFS_POINTER = b"version https://git-lfs"
# column dtypes other than str; nullable text as object so a missing value stays None
_DTYPES = {
    **dict.fromkeys(
        ("valence", "arousal", "dominance", "sentiment", "start", "end", "duration", "age"), "float64"
    ),
    **dict.fromkeys(("split", "video_path", "sex", "race", "ethnicity"), object),
    "label_id": "int64",
}


def check_layout(root: Path) -> None:
    """Raise :class:`common.LayoutError` unless ``root`` looks like a CREMA-D release."""
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise common.LayoutError(f"{root}: not found; expected the CREMA-D folder holding {AUDIO_DIR}/")
    if root.name == AUDIO_DIR:
        raise common.LayoutError(
            f"{root}: this is the {AUDIO_DIR}/ folder itself; point corpora.cremad.root at its parent"
        )
    audio = common.require(
        root / AUDIO_DIR, f"the CREMA-D {AUDIO_DIR}/ folder of <actor>_<sentence>_<emotion>_<level>.wav"
    )
    if not audio.is_dir():
        raise common.LayoutError(f"{audio}: not a folder; expected the CREMA-D clips folder")
    first = next(audio.glob("*.wav"), None)
    if first is not None and first.read_bytes()[: len(_LFS_POINTER)] == _LFS_POINTER:
        # a clone of the GitHub release without `git lfs pull` has 130-byte pointer files
        raise common.LayoutError(
            f"{first}: a Git LFS pointer, not audio; run `git lfs pull` in the CREMA-D clone first"
        )
    csv = common.require(
        root / DEMOGRAPHICS, "the CREMA-D actor demographics CSV (ActorID, Age, Sex, Race, Ethnicity)"
    )
    header = common.read_text(csv).partition("\n")[0].strip().split(",")
    missing = [c for c in DEMOGRAPHIC_COLUMNS if c not in [h.strip() for h in header]]
    if missing:
        raise common.LayoutError(
            f"{csv}: columns {missing} not found in header {header}; expected {list(DEMOGRAPHIC_COLUMNS)}"
        )


def parse_name(stem: str) -> dict[str, str]:
    """The codes in a clip name; ValueError naming the field that does not parse.

    >>> parse_name("1001_DFA_ANG_XX")
    {'actor': '1001', 'sentence': 'DFA', 'emotion': 'ANG', 'level': 'XX'}
    """
    fields = stem.split("_")
    if len(fields) != 4:
        raise ValueError(f"{len(fields)} fields, expected ActorID_Sentence_Emotion_Level")
    actor, sentence, emotion, level = fields
    if not _ACTOR.fullmatch(actor):
        raise ValueError(f"actor id {actor!r} is not 4 digits")
    if sentence not in SENTENCES:
        raise ValueError(f"unknown sentence code {sentence!r}; expected one of {sorted(SENTENCES)}")
    if level not in INTENSITIES:
        raise ValueError(f"unknown level {level!r}; expected one of {INTENSITIES}")
    return {"actor": actor, "sentence": sentence, "emotion": emotion, "level": level}


def read_demographics(path: Path) -> pd.DataFrame:
    """VideoDemographics.csv indexed by ActorID (str): ``age`` (float), ``sex``, ``race``, ``ethnicity``."""
    raw = pd.read_csv(io.StringIO(common.read_text(path)), dtype=str, keep_default_na=False)
    raw.columns = [c.strip() for c in raw.columns]
    raw = raw.apply(lambda column: column.str.strip())
    duplicated = raw["ActorID"].duplicated()
    if duplicated.any():
        logger.warning(
            "%s: actors listed twice, first row kept: %s", path, sorted(set(raw.loc[duplicated, "ActorID"]))
        )
        raw = raw[~duplicated]
    age = pd.to_numeric(raw["Age"], errors="coerce")
    if age.isna().any():
        logger.warning(
            "%s: unreadable Age for actors %s (NaN)", path, raw.loc[age.isna(), "ActorID"].tolist()
        )
    return pd.DataFrame(
        {"age": age.astype("float64").to_numpy(), "sex": raw["Sex"].to_numpy(),
         "race": raw["Race"].to_numpy(), "ethnicity": raw["Ethnicity"].to_numpy()},
        index=pd.Index(raw["ActorID"].to_numpy(), name="ActorID"),
    )  # fmt: skip


def load(root: Path, labels: str = DEFAULT_LABELS) -> common.LoadResult:
    """Load CREMA-D under ``root`` with the label map ``labels`` (``6class`` or ``shared4``)."""
    root = Path(os.path.abspath(root))  # absolute paths in the table, symlinks kept (no resolve)
    check_layout(root)
    mapping = label_map(CORPUS, labels)
    people = read_demographics(root / DEMOGRAPHICS).to_dict("index")
    video_dir = root / VIDEO_DIR
    if not video_dir.is_dir():
        logger.info("%s: no %s/ folder, video_path is None for every clip", root, VIDEO_DIR)
    quarantine, repairs = common.Quarantine(CORPUS), Counter()
    missing_actors: set[str] = set()
    rows = []
    for wav in tqdm(sorted((root / AUDIO_DIR).glob("*.wav")), desc=CORPUS, unit="utt"):
        utt_id = wav.stem
        try:
            codes = parse_name(utt_id)
        except ValueError as exc:
            quarantine.add(utt_id, "bad_row", f"{wav.name}: {exc}")
            continue
        label = mapping.map(codes["emotion"])
        if label is None:
            quarantine.add(utt_id, "label_outside_map", codes["emotion"])
            continue
        if not common.check_media(wav, utt_id, quarantine, need_audio=True):
            continue
        flv = video_dir / f"{utt_id}.flv"
        if flv.is_file():
            if not common.check_media(flv, utt_id, quarantine, need_video=True):
                continue
        else:
            flv = None
        duration = common.probe_media(wav).duration
        actor = codes["actor"]
        if actor in people:
            person = people[actor]
            age, sex, race, ethnicity = person["age"], person["sex"], person["race"], person["ethnicity"]
        else:
            missing_actors.add(actor)
            repairs["missing_demographics"] += 1
            age, sex, race, ethnicity = np.nan, None, None, None
        rows.append({
            "utt_id": utt_id, "corpus": CORPUS, "speaker": actor, "session": actor, "split": None,
            "label": label, "label_id": mapping.label_id(label), "valence": np.nan, "arousal": np.nan,
            "dominance": np.nan, "sentiment": np.nan, "text": SENTENCES[codes["sentence"]],
            "audio_path": str(wav), "video_path": str(flv) if flv is not None else None,
            "start": 0.0, "end": duration, "duration": duration,
            "raw_label": codes["emotion"], "sentence_code": codes["sentence"], "intensity": codes["level"],
            "age": age, "sex": sex, "race": race, "ethnicity": ethnicity,
        })  # fmt: skip
    if missing_actors:
        logger.warning(
            "%s: actors %s not in %s; their %d clips kept with demographics NaN",
            root, sorted(missing_actors), DEMOGRAPHICS, repairs["missing_demographics"],
        )  # fmt: skip
    result = common.LoadResult(_frame(rows), quarantine.frame(), dict(repairs))
    logger.info("%s: %s", CORPUS, result.counts())
    return result


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> the table with the contract dtypes (also when every clip was quarantined).

    Nullable text columns are built as object so a missing value stays ``None`` (pandas 3
    would infer its ``str`` dtype and turn ``None`` into NaN).
    """
    columns = [*COLUMNS, *EXTRA_COLUMNS]
    table = pd.DataFrame(
        {
            column: pd.Series([row[column] for row in rows], dtype=_DTYPES.get(column, "str"))
            for column in columns
        }
    )
    return table.sort_values("utt_id", kind="stable").reset_index(drop=True)
