"""Skip records: a stage whose work nothing would read (or could not be done honestly) writes
``skipped.json`` in its output folders, in seconds, instead of its outputs.

Who writes one: a recipe the source corpus cannot support (``mer.recipes``: its model,
prediction and dvclive folders), an extract stage whose features no model reads
(``mer.extract``: a modality not in ``model.modalities``, the swap extractor when ``adapt.swap``
is false, the target of ``corpora.target: none``). The folder then holds only the record, so
DVC's outputs exist and nothing downstream can take it for real outputs: readers call
:func:`refuse_skipped`, which fails naming the reason and the fix.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = write_skip(folder, {"reason": "video is not in model.modalities", "fix": "add it"})
>>> read_skip(folder)["reason"]
'video is not in model.modalities'
>>> refuse_skipped(folder, "video features")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mer.skips.SkippedError: ...: no video features here: the stage skipped it (video is ...); add it, ...
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from mer.files import write_json

SKIP_FILE = "skipped.json"


class SkippedError(RuntimeError):
    """A reader was pointed at a folder its stage skipped; the message says why and the fix."""


def write_skip(directory: str | Path, record: dict[str, Any], clear: bool = False) -> Path:
    """Write ``directory/skipped.json`` (``record``: at least ``reason`` and ``fix``); with
    ``clear``, first remove everything else in ``directory`` (a persisted output's old files)."""
    missing = [k for k in ("reason", "fix") if not record.get(k)]
    if missing:
        raise ValueError(f"a skip record needs {missing}, got {record!r}")
    directory = Path(directory)
    if clear and directory.is_dir():
        for path in directory.iterdir():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    return write_json(directory / SKIP_FILE, record)


def read_skip(directory: str | Path) -> dict[str, Any] | None:
    """The skip record in ``directory``; None when there is none."""
    path = Path(directory) / SKIP_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def refuse_skipped(directory: str | Path, what: str) -> None:
    """Fail if ``directory`` holds a skip record instead of ``what`` (e.g. ``audio features``)."""
    record = read_skip(directory)
    if record is not None:
        raise SkippedError(
            f"{directory}: no {what} here: the stage skipped it ({record['reason']}); "
            f"{record['fix']}, then `dvc repro`"
        )
