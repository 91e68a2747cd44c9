"""IEMOCAP loader: ``IEMOCAP_full_release/`` -> the uniform metadata table.

Layout read (``Session{1..5}`` under the root)::

    Session1/dialog/EmoEvaluation/<dialog>.txt     one summary line per utterance (below)
    Session1/dialog/transcriptions/<dialog>.txt    "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
    Session1/sentences/wav/<dialog>/<utt_id>.wav   the utterance's audio (16 kHz mono)
    Session1/dialog/avi/DivX/<dialog>.avi          one split-screen video per dialog

An EmoEvaluation summary line is tab-separated, ``[start - end]  utt_id  category  [V, A, D]``;
the ``%`` header, blank lines and the per-annotator ``C-`` / ``A-`` lines are skipped.
Transcript lines without an utterance id (``M: ...``) or with an id that has no summary line
(``Ses01F_impro01_MXX0``) are noise and ignored.

Columns beyond ``mer.schema.COLUMNS``: ``raw_label`` (the IEMOCAP category, e.g. ``exc``),
``dialog`` (``Ses01F_impro01``), ``improvised`` (bool: ``impro`` in the dialog name),
``video_start`` / ``video_end`` (the utterance's window in the dialog avi, seconds; NaN when the
avi is missing). ``speaker`` is the session plus the letter after the last underscore of the
id (``Ses01F_impro01_M003`` -> ``Ses01_M``; the ``F`` in ``Ses01F`` names who wore the motion
capture markers, not the speaker), ``session`` is ``Ses01`` .. ``Ses05``, ``split`` is None (the
protocol assigns leave-one-session-out folds), ``sentiment`` is NaN.

Defects: a missing / unreadable wav is quarantined (``missing_file`` / ``corrupt_media``); a
missing or unreadable avi is not (many copies ship without the videos): ``video_path`` is None
and a warning is logged once per dialog. A summary line that does not parse is ``bad_row``
under its utterance id, or under ``<file>:<line>`` when no id can be read.

>>> parse_summary_line("[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t[2.5000, 2.5000, 2.5000]")
('Ses01F_impro01_F000', 6.2901, 8.2357, 'neu', (2.5, 2.5, 2.5))
>>> speaker_of("Ses01F_impro01_M003")
'Ses01_M'
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mer import schema
from mer.corpora import common
from mer.corpora.labels import label_map
from mer.media import MediaError

logger = logging.getLogger(__name__)

CORPUS = "iemocap"
#: Labels beside the emotion (mer.vocab.LABEL_KINDS): the [valence, arousal, dominance] of each
#: summary line; IEMOCAP has no sentiment
LABEL_KINDS = ("vad",)
DEFAULT_LABELS = "4class"
SESSIONS = (1, 2, 3, 4, 5)
EXTRA_COLUMNS = ("raw_label", "dialog", "improvised", "video_start", "video_end")
# Ses01F_impro01_F000, Ses01F_script01_1_M012, Ses03M_impro05a_F000, Ses05M_script01_1b_F000
UTT_ID = re.compile(r"^(Ses\d\d)[FM]_\w+?_([FM])\d+$")
_UTT_ID_ANYWHERE = re.compile(r"Ses\d\d[FM]_\w+?_[FM]\d+")
_TIMES = re.compile(r"^\[\s*(\S+)\s*-\s*(\S+)\s*\]$")
_TRANSCRIPT_LINE = re.compile(r"^(Ses\d\d[FM]_\S+)\s*\[[^\]]*\]:\s?(.*)$")
_SKIPPED_PREFIXES = ("%", "C-", "A-")


class SummaryLineError(ValueError):
    """An EmoEvaluation summary line that does not parse; ``utt_id`` when one could be read."""

    def __init__(self, message: str, utt_id: str | None) -> None:
        super().__init__(message)
        self.utt_id = utt_id


def speaker_of(utt_id: str) -> str:
    """``Ses01_M`` for ``Ses01F_impro01_M003``: session + the speaking actor's gender letter."""
    match = UTT_ID.match(utt_id)
    if match is None:
        raise ValueError(f"{utt_id!r} is not an IEMOCAP utterance id (e.g. Ses01F_impro01_F000)")
    return f"{match.group(1)}_{match.group(2)}"


def parse_summary_line(line: str) -> tuple[str, float, float, str, tuple[float, float, float]]:
    """``(utt_id, start, end, category, (valence, arousal, dominance))`` of one summary line.

    Raises:
        SummaryLineError: the line does not have the four tab-separated fields, the times or
            V/A/D are not numbers, ``end <= start``, or the id is not an IEMOCAP utterance id.
    """
    found = _UTT_ID_ANYWHERE.search(line)
    utt_id = found.group(0) if found else None
    fields = [f.strip() for f in line.strip().split("\t") if f.strip()]
    if len(fields) != 4:
        raise SummaryLineError(f"expected 4 tab-separated fields, got {len(fields)}", utt_id)
    times, id_field, category, vad = fields
    if UTT_ID.match(id_field) is None:
        raise SummaryLineError(f"{id_field!r} is not an IEMOCAP utterance id", utt_id)
    utt_id = id_field
    match = _TIMES.match(times)
    try:
        start, end = (float(match.group(1)), float(match.group(2))) if match else (math.nan, math.nan)
    except ValueError:
        start = end = math.nan
    if math.isnan(start) or math.isnan(end):
        raise SummaryLineError(f"unparsable times {times!r}", utt_id)
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise SummaryLineError(f"times {times!r} are not a window (0 <= start < end)", utt_id)
    try:
        values = tuple(float(v) for v in vad.strip("[]").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise SummaryLineError(f"unparsable [V, A, D] {vad!r}", utt_id)
    return utt_id, start, end, category, values


def check_layout(root: Path) -> None:
    """Raise :class:`common.LayoutError` unless ``root`` looks like ``IEMOCAP_full_release/``.

    Cheap: checks the session folders and that each EmoEvaluation folder has a ``.txt``.
    """
    root = Path(root)
    if not root.is_dir():
        raise common.LayoutError(f"{root}: not found or not a folder; expected IEMOCAP_full_release")
    if not (root / "Session1").exists() and (root / "IEMOCAP_full_release").is_dir():
        raise common.LayoutError(
            f"{root / 'Session1'}: not found; {root} looks like the folder above the corpus, "
            f"pass {root / 'IEMOCAP_full_release'}"
        )
    for n in SESSIONS:
        session = common.require(root / f"Session{n}", f"the IEMOCAP session folder Session{n}")
        common.require(session / "dialog" / "EmoEvaluation", "the per-dialog emotion evaluation files")
        common.require(session / "dialog" / "transcriptions", "the per-dialog transcripts")
        common.require(session / "sentences" / "wav", "one folder of utterance wavs per dialog")
        if next(_evaluation_files(session), None) is None:
            raise common.LayoutError(
                f"{session / 'dialog' / 'EmoEvaluation'}: no <dialog>.txt found; expected one "
                "EmoEvaluation summary file per dialog"
            )


def _evaluation_files(session: Path) -> Iterator[Path]:
    # "._Ses01F_impro01.txt": macOS resource forks in copies made on a Mac
    folder = session / "dialog" / "EmoEvaluation"
    return (p for p in sorted(folder.glob("*.txt")) if not p.name.startswith("._"))


def _read_evaluation(path: Path, root: Path, session: str, quarantine: common.Quarantine) -> list[dict]:
    """Summary rows of one EmoEvaluation file; unparsable summary lines are quarantined."""
    rows = []
    dialog = path.stem
    for number, line in enumerate(common.read_text(path).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith(_SKIPPED_PREFIXES):
            continue
        try:
            utt_id, start, end, category, (valence, arousal, dominance) = parse_summary_line(line)
        except SummaryLineError as exc:
            where = f"{path.relative_to(root)}:{number}"
            quarantine.add(exc.utt_id or where, "bad_row", f"{where}: {exc}: {line.strip()!r}")
            continue
        rows.append({
            "utt_id": utt_id, "session": session, "dialog": dialog, "raw_label": category,
            "start": start, "end": end, "valence": valence, "arousal": arousal, "dominance": dominance,
        })  # fmt: skip
    return rows


def _read_transcripts(path: Path) -> dict[str, str]:
    """utt_id -> raw transcript text of one transcription file (first line wins)."""
    texts: dict[str, str] = {}
    for line in common.read_text(path).splitlines():
        match = _TRANSCRIPT_LINE.match(line.strip())
        if match is not None:
            texts.setdefault(match.group(1), match.group(2).strip())
    return texts


def _dialog_video(root: Path, session_dir: str, dialog: str) -> Path | None:
    """The dialog's avi if it exists and has a readable video stream, else None (warned)."""
    path = root / session_dir / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
    if not path.is_file():
        logger.warning("%s: dialog video not found; its utterances get video_path None", path)
        return None
    try:
        info = common.probe_media(path)
    except MediaError as exc:
        logger.warning("%s; its utterances get video_path None", exc)
        return None
    if not info.has_video:
        logger.warning("%s: no video stream; its utterances get video_path None", path)
        return None
    return path


def load(root: Path, labels: str = DEFAULT_LABELS) -> common.LoadResult:
    """Load IEMOCAP under ``root`` (the ``IEMOCAP_full_release`` folder).

    Args:
        root: the corpus folder.
        labels: a map of ``mer.corpora.labels.LABEL_MAPS["iemocap"]``: ``4class`` (ang,
            hap+exc, neu, sad), ``6class`` (hap, sad, neu, ang, exc, fru) or ``shared4``.

    Returns:
        table sorted by ``utt_id`` (columns ``mer.schema.COLUMNS`` + ``EXTRA_COLUMNS``),
        quarantine and repairs (``mojibake``, ``duplicate_row``).

    Raises:
        common.LayoutError: ``root`` is not an IEMOCAP release (see :func:`check_layout`).
        ValueError: ``labels`` is not an IEMOCAP label map.
    """
    root = Path(root).resolve()
    check_layout(root)
    lmap = label_map(CORPUS, labels)
    quarantine = common.Quarantine(CORPUS)
    repairs: Counter = Counter()

    summary = []
    for n in SESSIONS:
        for path in _evaluation_files(root / f"Session{n}"):
            summary.extend(_read_evaluation(path, root, f"Ses{n:02d}", quarantine))
    summary = pd.DataFrame(summary, columns=[
        "utt_id", "session", "dialog", "raw_label", "start", "end", "valence", "arousal", "dominance",
    ])  # fmt: skip
    summary = common.drop_duplicates(summary, "utt_id", quarantine, repairs)

    transcripts: dict[str, dict[str, str]] = {}
    videos: dict[str, Path | None] = {}
    rows = []
    for utt in tqdm(summary.itertuples(index=False), total=len(summary), desc="iemocap"):
        session_dir = f"Session{int(utt.session[3:])}"
        label = lmap.map(utt.raw_label)
        if label is None:
            quarantine.add(utt.utt_id, "label_outside_map", utt.raw_label)
            continue
        if utt.dialog not in transcripts:
            path = root / session_dir / "dialog" / "transcriptions" / f"{utt.dialog}.txt"
            transcripts[utt.dialog] = _read_transcripts(path) if path.is_file() else {}
            if not path.is_file():
                logger.warning("%s: transcript file not found", path)
        text = transcripts[utt.dialog].get(utt.utt_id, "")
        if not text:
            quarantine.add(utt.utt_id, "empty_transcript", f"no transcript line in {utt.dialog}.txt")
            continue
        audio = root / session_dir / "sentences" / "wav" / utt.dialog / f"{utt.utt_id}.wav"
        if not common.check_media(audio, utt.utt_id, quarantine, need_audio=True):
            continue
        text, repaired = common.repair_mojibake(text)
        repairs["mojibake"] += int(repaired)
        if utt.dialog not in videos:
            videos[utt.dialog] = _dialog_video(root, session_dir, utt.dialog)
        video = videos[utt.dialog]
        rows.append({
            "utt_id": utt.utt_id, "corpus": CORPUS, "speaker": speaker_of(utt.utt_id),
            "session": utt.session, "split": None, "label": label, "label_id": lmap.label_id(label),
            "valence": utt.valence, "arousal": utt.arousal, "dominance": utt.dominance,
            "sentiment": np.nan, "text": text, "audio_path": str(audio),
            "video_path": str(video) if video is not None else None,
            "start": utt.start, "end": utt.end, "duration": utt.end - utt.start,
            "raw_label": utt.raw_label, "dialog": utt.dialog, "improvised": "impro" in utt.dialog,
            "video_start": utt.start if video is not None else np.nan,
            "video_end": utt.end if video is not None else np.nan,
        })  # fmt: skip

    table = pd.DataFrame(rows, columns=[*schema.COLUMNS, *EXTRA_COLUMNS])
    table = table.astype({
        "label_id": "int64", "improvised": "bool",
        **dict.fromkeys(("valence", "arousal", "dominance", "sentiment", "start", "end", "duration",
                         "video_start", "video_end"), "float64"),
    })  # fmt: skip
    table = table.sort_values("utt_id", ignore_index=True)
    result = common.LoadResult(table, quarantine.frame(), {k: v for k, v in repairs.items() if v})
    logger.info(
        "iemocap (%s): %d utterances, quarantined %s, repaired %s",
        labels, len(table), dict(Counter(result.quarantine["reason"])), result.repairs,
    )  # fmt: skip
    return result
