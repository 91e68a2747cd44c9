"""CMU-MOSEI as a user with only the released features has it (seed 002's source): the MMSA
``MOSEI/label.csv`` (tests/fixtures_mmsa's videos, scores and label defects, no ``Raw/``) and the
three CMU-MultimodalSDK computational sequences seed 002 trains on, in the SDK's exact format
(tests/fixtures_external.write_csd), tiny dims standing in for GloVe 300 / COVAREP 74 /
OpenFace2 713:

- entries segmented per utterance, named as the SDK names aligned segments, ``{video}[{clip}]``
  (MMSA's table has no clip times, so a per-video entry would fit a video's only clip alone);
  here the numbering is MMSA's ``clip_id`` (see mer.external.csd on the SDK's 0-based one);
- every label.csv row has an entry, the quarantined ones included (counted as unmatched);
- COVAREP's ``-inf`` log energy in two frames of the first clip (dropped and counted).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tests import fixtures_external, fixtures_mmsa

FILES = {
    "text": ("CMU_MOSEI_TimestampedWordVectors.csd", "glove_vectors"),
    "audio": ("CMU_MOSEI_COVAREP.csd", "COVAREP"),
    "video": ("CMU_MOSEI_VisualOpenFace2.csd", "OpenFace_2"),
}
DIMS = {"text": 7, "audio": 74, "video": 9}  # audio 74 as COVAREP's: the 74 -> 74 adapter is residual
LENGTHS = {"text": 4, "audio": 10, "video": 6}  # frames per clip (words, 10 ms COVAREP, 30 fps OpenFace)
STEPS = {"text": 0.3, "audio": 0.01, "video": 1 / 30}
NONFINITE_FRAMES = 2
# the label defects of tests/fixtures_mmsa (its media defects are plain rows without Raw/)
PLANTED = {"conflicting_duplicate": 1, "empty_transcript": 1, "bad_row": 3, "mojibake": 1, "duplicate_row": 1}


def paths(corpus: Path) -> dict[str, Path]:
    """``{modality: .csd path}`` under a root :func:`build` wrote."""
    return {modality: Path(corpus) / name for modality, (name, _) in FILES.items()}


def build(root: Path) -> Path:
    """Write ``root/MOSEI`` (label.csv and the three ``.csd`` files); returns the corpus root."""
    corpus = fixtures_mmsa.build(root, defects=True, media=False, name="MOSEI")
    with (corpus / "label.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = dict.fromkeys(f"{row['video_id']}[{row['clip_id']}]" for row in rows)  # duplicates once
    scores = {f"{row['video_id']}[{row['clip_id']}]": row["label"] for row in rows}
    for modality, (name, root_name) in FILES.items():
        entries = {}
        for seed, key in enumerate(keys):
            try:
                score = float(scores[key])
            except ValueError:  # the planted non-numeric label
                score = 0.0
            shape = (LENGTHS[modality], DIMS[modality])
            features, intervals = fixtures_external.frames(*shape, step=STEPS[modality], seed=seed)
            entries[key] = (features + score, intervals)  # features follow the score: something to learn
        if modality == "audio":
            first = next(iter(keys))
            entries[first][0][[1, 3], 0] = -np.inf  # COVAREP's log energy of silent frames
        fixtures_external.write_csd(corpus / name, root_name, entries)
    return corpus
