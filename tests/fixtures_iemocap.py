"""A small IEMOCAP_full_release tree in the real layout, with the release's defects planted.

Every session has two dialogs (``Ses0nF_impro01``, ``Ses0nM_script01_1``), each with one
utterance per 4-class class per speaker (F and M): 16 clean utterances a session, so any
leave-one-session-out fold has every class from both speakers in train, dev and test (4 per
class per session). Happiness is ``hap`` in the improvised and ``exc`` in the scripted dialogs.
Utterances start 0.2 s apart and last 0.5 s (overlapping turns, as in the real dialogs); each
dialog avi (no audio stream) covers all its windows.

With ``defects=True`` extra utterances carry the defects (``DEFECTS``: utt_id -> what), none of
them needed for the class coverage; ``PLANTED`` counts what ``mer.corpora.iemocap.load`` with the
default 4-class map reports. Transcripts always carry noise lines (``M: ...`` without an id,
``..._MXX0`` ids with no summary line), as the real ones do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.corpus_media import write_corrupt, write_video, write_wav

SESSIONS = (1, 2, 3, 4, 5)
SPACING, LENGTH = 0.2, 0.5  # seconds between utterance starts, utterance length
CLASS_LABELS = ("ang", "hap", "neu", "sad")  # hap -> exc in scripted dialogs
VAD = {
    "ang": (1.9, 4.2, 4.0), "hap": (4.3, 3.9, 3.5), "exc": (4.1, 4.4, 3.6), "neu": (3.0, 2.8, 3.0),
    "sad": (1.8, 2.0, 2.0), "fru": (2.0, 3.5, 3.1), "xxx": (2.5, 3.0, 3.0), "oth": (3.0, 3.0, 3.0),
}  # fmt: skip
FREQ = {"ang": 330.0, "hap": 262.0, "exc": 277.0, "neu": 196.0, "sad": 131.0, "fru": 247.0, "xxx": 220.0,
        "oth": 208.0}  # fmt: skip
TEXT = {
    "ang": "I am furious, this is outrageous!", "hap": "What a wonderful day, I love it!",
    "exc": "This is amazing, I can't wait!", "neu": "The meeting is at noon on Monday.",
    "sad": "I feel so heartbroken and alone.", "fru": "Why does this never work, ugh.",
    "xxx": "Well, I guess so.", "oth": "Hmm, okay then.",
}  # fmt: skip
MOJIBAKE_TEXT = "I donâ€™t know what to say."  # UTF-8 "’" decoded as cp1252
MOJIBAKE_REPAIRED = "I don’t know what to say."
ANNOTATOR_WORD = {"ang": "Anger", "hap": "Happiness", "exc": "Excited", "neu": "Neutral state",
                  "sad": "Sadness", "fru": "Frustration", "xxx": "Neutral state", "oth": "Other"}  # fmt: skip

# session, dialog kind, raw label, defect (see DEFECTS)
_DEFECT_PLAN = (
    (1, "impro", "neu", "missing_wav"),
    (1, "script", "sad", "corrupt_wav"),
    (2, "impro", "neu", "mojibake"),
    (2, "script", "ang", "duplicate_summary"),
    (3, "impro", "fru", "outside_map"),
    (3, "script", "xxx", "outside_map"),
    (4, "impro", "oth", "outside_map"),
    (4, "script", "neu", "no_transcript"),
    (5, "impro", "neu", "garbled_times"),
    (5, "script", "sad", "garbled_line"),
)
#: What load(root) (4-class) reports for a tree built with defects=True.
PLANTED = {
    "missing_file": 1, "corrupt_media": 1, "mojibake": 1, "duplicate_row": 1, "label_outside_map": 3,
    "empty_transcript": 1, "bad_row": 2,
}  # fmt: skip
#: Raw labels outside the 4-class map among the planted utterances (6-class keeps ``fru``).
OUTSIDE_4CLASS = {"fru": 1, "xxx": 1, "oth": 1}
CLEAN_PER_SESSION = 2 * 2 * len(CLASS_LABELS)  # dialogs x speakers x classes


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    dialog: str
    raw_label: str
    start: float
    end: float
    defect: str | None = None

    @property
    def vad(self) -> tuple[float, float, float]:
        return VAD[self.raw_label]

    @property
    def text(self) -> str:
        return MOJIBAKE_TEXT if self.defect == "mojibake" else TEXT[self.raw_label]


def dialogs(session: int) -> dict[str, str]:
    """``{"impro": "Ses01F_impro01", "script": "Ses01M_script01_1"}`` for session 1."""
    return {"impro": f"Ses{session:02d}F_impro01", "script": f"Ses{session:02d}M_script01_1"}


def plan(defects: bool = True) -> dict[str, list[Utterance]]:
    """dialog -> its utterances in time order (F and M interleaved)."""
    out = {}
    for session in SESSIONS:
        for kind, dialog in dialogs(session).items():
            labels = [("exc" if kind == "script" and c == "hap" else c, None) for c in CLASS_LABELS]
            turns = [(gender, label, None) for label, _ in labels for gender in "FM"]
            if defects:
                turns += [
                    ("FM"[i % 2], label, defect)
                    for i, (s, k, label, defect) in enumerate(_DEFECT_PLAN)
                    if (s, k) == (session, kind)
                ]
            counters = {"F": 0, "M": 0}
            utterances = []
            for index, (gender, label, defect) in enumerate(turns):
                start = round(0.1 + SPACING * index, 4)
                utt_id = f"{dialog}_{gender}{counters[gender]:03d}"
                counters[gender] += 1
                utterances.append(Utterance(utt_id, dialog, label, start, round(start + LENGTH, 4), defect))
            out[dialog] = utterances
    return out


#: utt_id -> defect, for a tree built with defects=True.
DEFECTS = {u.utt_id: u.defect for utts in plan(True).values() for u in utts if u.defect}


def _summary_block(utt: Utterance) -> str:
    v, a, d = utt.vad
    line = f"[{utt.start:.4f} - {utt.end:.4f}]\t{utt.utt_id}\t{utt.raw_label}\t[{v:.4f}, {a:.4f}, {d:.4f}]"
    if utt.defect == "garbled_times":
        line = line.replace(f"{utt.start:.4f}", f"{utt.start:.4f}".replace(".", "x", 1), 1)
    elif utt.defect == "garbled_line":  # cut off mid-line, the id lost
        line = line[:12]
    word = ANNOTATOR_WORD[utt.raw_label]
    detail = [
        f"C-E1:\t{word};\t()", f"C-E2:\t{word};\t()", f"C-F1:\t{word};\t(self)",
        f"A-E1:\tval {round(v)}; act {round(a)}; dom  {round(d)};\t()",
        f"A-F1:\tval {round(v)}; act {round(a)}; dom  {round(d)};\t()",
    ]  # fmt: skip
    block = "\n".join([line, *detail]) + "\n\n"
    return block * 2 if utt.defect == "duplicate_summary" else block


def _transcript(utterances: list[Utterance]) -> str:
    lines = []
    for index, utt in enumerate(utterances):
        if utt.defect != "no_transcript":
            lines.append(f"{utt.utt_id} [{utt.start:08.4f}-{utt.end:08.4f}]: {utt.text}")
        if index % 3 == 1:  # noise the loader must ignore
            noise_id = f"{utt.dialog}_{'MF'[index % 2]}XX0"
            lines.append(f"{noise_id} [{utt.start + 0.1:08.4f}-{utt.start + 0.3:08.4f}]: [LAUGHTER]")
            lines.append("M: [BREATHING]")
    return "\n".join(lines) + "\n"


def build(root: Path, defects: bool = True) -> Path:
    """Write ``root/IEMOCAP_full_release`` (about 0.5 s); return that folder."""
    corpus = Path(root) / "IEMOCAP_full_release"
    seed = 0
    for dialog, utterances in plan(defects).items():
        session = corpus / f"Session{int(dialog[3:5])}"
        evaluation = session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        transcript = session / "dialog" / "transcriptions" / f"{dialog}.txt"
        for path in (evaluation, transcript):
            path.parent.mkdir(parents=True, exist_ok=True)
        header = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        evaluation.write_text(header + "".join(_summary_block(u) for u in utterances), encoding="utf-8")
        transcript.write_text(_transcript(utterances), encoding="utf-8")
        for utt in utterances:
            wav = session / "sentences" / "wav" / dialog / f"{utt.utt_id}.wav"
            seed += 1
            if utt.defect == "corrupt_wav":
                write_corrupt(wav)
            elif utt.defect != "missing_wav":
                write_wav(wav, seconds=LENGTH, freq=FREQ[utt.raw_label], seed=seed)
        avi = session / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
        write_video(avi, seconds=max(u.end for u in utterances) + 0.5, audio=False, seed=seed)
    return corpus
