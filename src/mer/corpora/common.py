"""What every real-corpus loader shares: the result type, layout errors, defect handling.

A loader turns a corpus folder into rows of the uniform metadata table (:mod:`mer.schema`)
and a quarantine list. Nothing a release gets wrong is dropped silently and nothing crashes a
stage: unambiguous defects are repaired and counted (``repairs``), everything else becomes a
quarantine entry naming the utterance, the reason and the file.

Quarantine reasons (``QUARANTINE_REASONS``): ``missing_file``, ``corrupt_media``,
``no_audio_stream``, ``no_video_stream``, ``clip_too_long`` (a clip far longer than its
timestamps say), ``label_outside_map`` (a label the chosen label map leaves out, e.g. IEMOCAP
``fru`` under the 4-class protocol), ``conflicting_duplicate``, ``empty_transcript``,
``bad_row`` (an unparsable field).

>>> repair_mojibake("I donâ€™t know")
('I don’t know', True)
>>> repair_mojibake("plain text")
('plain text', False)
>>> repair_mojibake("â€œquotedâ€\x9d")  # 0x9d has no cp1252 character: passed through as a byte
('“quoted”', True)
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av
import pandas as pd

from mer.media import MediaError

logger = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ("utt_id", "corpus", "reason", "detail")
QUARANTINE_REASONS = (
    "missing_file", "corrupt_media", "no_audio_stream", "no_video_stream", "clip_too_long",
    "label_outside_map", "conflicting_duplicate", "empty_transcript", "bad_row",
)  # fmt: skip
# byte sequences that UTF-8 text decoded as cp1252 leaves behind ("â€™" for "’", "Ã©" for "é")
_MOJIBAKE_MARKERS = ("â€", "Ã", "Â")


class LayoutError(FileNotFoundError):
    """A corpus root is missing, lacks an expected file or has an unknown layout.

    The message names the path and what was expected there, so the fix is obvious before any
    work starts (raised by each loader's ``check_layout``).
    """


@dataclass
class LoadResult:
    """One corpus, loaded.

    Attributes:
        table: rows of the uniform metadata table (``mer.schema.COLUMNS`` plus optional
            ``video_start`` / ``video_end`` and ``raw_label``); ``split`` holds the official
            split where the corpus has one, else ``None``; ``label`` / ``label_id`` follow the
            label map.
        quarantine: ``QUARANTINE_COLUMNS`` rows, one per utterance left out, with its reason.
        repairs: count of each repair made in place (``{"mojibake": 3, "duplicate_row": 1}``).
    """

    table: pd.DataFrame
    quarantine: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(QUARANTINE_COLUMNS)))
    repairs: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """``{"utterances": n, "quarantine/<reason>": n, "repaired/<kind>": n}`` for metrics."""
        out = {"utterances": len(self.table)}
        out.update({f"quarantine/{r}": int(n) for r, n in Counter(self.quarantine["reason"]).items()})
        out.update({f"repaired/{k}": int(n) for k, n in self.repairs.items()})
        return out


class Quarantine:
    """Collects quarantine entries while a loader walks a corpus."""

    def __init__(self, corpus: str) -> None:
        self.corpus = corpus
        self.rows: list[dict] = []

    def add(self, utt_id: str, reason: str, detail: str) -> None:
        if reason not in QUARANTINE_REASONS:
            raise ValueError(f"unknown quarantine reason {reason!r}; use one of {QUARANTINE_REASONS}")
        self.rows.append(
            {"utt_id": str(utt_id), "corpus": self.corpus, "reason": reason, "detail": str(detail)}
        )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(QUARANTINE_COLUMNS))


def require(path: Path, what: str) -> Path:
    """Return ``path`` if it exists, else raise :class:`LayoutError` naming it and ``what``."""
    if not path.exists():
        raise LayoutError(f"{path}: not found; expected {what}")
    return path


def repair_mojibake(text: str) -> tuple[str, bool]:
    """Undo UTF-8 text that was decoded as cp1252 (``â€™`` -> ``’``); ``(text, changed)``.

    Only applied when a marker is present and the round trip succeeds, so correct text (and
    text with a genuine ``Ã``) is left alone.
    """
    if not any(marker in text for marker in _MOJIBAKE_MARKERS):
        return text, False
    try:
        # the 5 bytes cp1252 leaves undefined (0x81, 0x8d, 0x8f, 0x90, 0x9d) were decoded to the
        # C1 code points of the same value; ``”`` ends in 0x9d, so they must round-trip too
        raw = b"".join(_cp1252_byte(ch) for ch in text)
        fixed = raw.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text, False
    return fixed, fixed != text


def _cp1252_byte(ch: str) -> bytes:
    try:
        return ch.encode("cp1252")
    except UnicodeEncodeError:
        if 0x80 <= ord(ch) <= 0x9F:
            return bytes([ord(ch)])
        raise


def read_text(path: Path) -> str:
    """A text file as UTF-8, falling back to cp1252 (some releases mix the two)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        logger.warning("%s: not UTF-8, read as cp1252", path)
        return data.decode("cp1252", errors="replace")


@dataclass(frozen=True)
class MediaProbe:
    """What :func:`probe_media` learnt from a container header."""

    duration: float | None  # seconds, None when the container does not say
    has_audio: bool
    has_video: bool


def probe_media(path: Path) -> MediaProbe:
    """Read a media file's header (streams and duration) without decoding it.

    Raises:
        mer.media.MediaError: the file is missing, empty or not a readable container.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            duration = container.duration / av.time_base if container.duration is not None else None
            if duration is None:
                durations = [
                    float(s.duration * s.time_base)
                    for s in container.streams
                    if s.duration is not None and s.time_base is not None
                ]
                duration = max(durations) if durations else None
            return MediaProbe(duration, bool(container.streams.audio), bool(container.streams.video))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{path}: cannot read media header ({exc})") from exc


def check_media(
    path: Path,
    utt_id: str,
    quarantine: Quarantine,
    *,
    need_audio: bool = False,
    need_video: bool = False,
    expected_seconds: float | None = None,
    max_overrun_seconds: float | None = None,
) -> bool:
    """Probe one clip; add a quarantine entry and return False when it is unusable.

    ``expected_seconds`` with ``max_overrun_seconds``: a clip longer than the timestamps say by
    more than the allowance is mis-cut (MELD ships some minutes long) and quarantined.
    """
    if not Path(path).is_file():
        quarantine.add(utt_id, "missing_file", str(path))
        return False
    try:
        info = probe_media(path)
    except MediaError as exc:
        quarantine.add(utt_id, "corrupt_media", str(exc))
        return False
    if need_audio and not info.has_audio:
        quarantine.add(utt_id, "no_audio_stream", str(path))
        return False
    if need_video and not info.has_video:
        quarantine.add(utt_id, "no_video_stream", str(path))
        return False
    if (
        expected_seconds is not None
        and max_overrun_seconds is not None
        and info.duration is not None
        and info.duration > expected_seconds + max_overrun_seconds
    ):
        quarantine.add(
            utt_id, "clip_too_long",
            f"{path}: {info.duration:.1f} s long, timestamps say {expected_seconds:.1f} s",
        )  # fmt: skip
        return False
    return True


def drop_duplicates(rows: pd.DataFrame, key: str, quarantine: Quarantine, repairs: Counter) -> pd.DataFrame:
    """Collapse exact duplicate rows (a repair) and quarantine ids whose duplicates disagree."""
    exact = rows.duplicated(keep="first")
    if exact.any():
        repairs["duplicate_row"] += int(exact.sum())
        rows = rows[~exact]
    clash = rows[key].duplicated(keep=False)
    for utt_id in rows.loc[clash, key].unique():
        quarantine.add(utt_id, "conflicting_duplicate", f"{int((rows[key] == utt_id).sum())} rows disagree")
    return rows[~clash]
