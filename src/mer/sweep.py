"""Collect a DVC experiment sweep into one Markdown table and one plot, ranked on the dev split.

The sweep itself is plain DVC::

    dvc exp run --queue -S fusion.beta=0.0,0.25,0.5,1.0   # one queued experiment per value
    dvc queue start -j 1                                   # runs them (train -> transfer -> evaluate)
    python -m mer.sweep --param fusion.beta                # reports/sweep/sweep.md + sweep.png
    dvc exp apply <name>                                   # the best by the DEV metric, named in sweep.md

Experiments are ranked by a *selection* metric measured on the dev split, by default the main
model's ``metrics/source.json:main/dev_ua`` (higher is better) or, for a regression model,
``main/dev_mae`` (lower is better); ``--select`` picks another. The test metric (default
``main/ua`` or ``main/mae``, with its ``_low``/``_high`` interval when present) is shown beside it
for information only: choosing the experiment with the best test score would make that score an
optimistic estimate, so it is never used to rank or recommend.

The collector reads ``dvc exp show --json``. In DVC 3.67 that is a list of rows: the ``workspace``
first, then the baseline commit (``HEAD``), whose ``experiments`` list holds one entry per
experiment, ``{"name", "executor": {"state", ...} | None, "revs": [{"rev", "name", "data",
"error"}]}``, and each ``data`` carries ``params[<file>]["data"]`` and ``metrics[<file>]["data"]``
as nested dicts. Failed, queued and running experiments are skipped (a failed one still reports
its baseline's metrics, so keeping it would be misleading). Metrics are flattened to
``<file>:<key>``: flat slash-separated keys stay as they are (``metrics/source.json:main/ua``;
DVC does not split on ``/``) and nested dicts of older experiments are joined with dots
(``metrics/source.json:test.fusion.ua``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mer import metric_keys as metric_key  # as: sweep.metric_keys lists an experiment's keys
from mer.logs import setup_logging

logger = logging.getLogger(__name__)

SUMMARY_FILE = metric_key.SOURCE_FILE  # the default metrics come from here
MAIN_PREFIX = f"{metric_key.MAIN}/"  # the main model's keys in SUMMARY_FILE (baselines: their own)
SCORES = ("ua", "mae")  # the main model's default metric: classification, else regression
MAIN_TEST = tuple(metric_key.main(m) for m in SCORES)  # the default test metric
MAIN_DEV = tuple(metric_key.main(metric_key.dev(m)) for m in SCORES)  # the default selection metric
MAIN_MODEL = metric_key.MAIN_MODEL  # older nested keys: preferred when several end in "ua"
FINISHED = {None, "success"}  # executor state of a usable experiment (None: not run by a queue)


class SweepError(ValueError):
    """A sweep cannot be collected or reported; the message says what is missing and the fix."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to one level with dotted keys; lists and scalars are leaves.

    >>> flatten({"test": {"fusion": {"ua": 0.9}}, "n": 3, "fractions": [10, 20]})
    {'test.fusion.ua': 0.9, 'n': 3, 'fractions': [10, 20]}
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _file_values(blocks: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"<file>": {"data": {...}}}`` (params or metrics of one rev) as ``{"<file>:<key>": value}``.

    Files that DVC could not read (``{"error": ...}`` instead of ``data``) are left out.
    """
    values: dict[str, Any] = {}
    for file_name, block in (blocks or {}).items():
        data = (block or {}).get("data")
        if isinstance(data, Mapping):
            values.update({f"{file_name}:{key}": value for key, value in flatten(data).items()})
    return values


_MISSING = object()


def _param_value(params: Mapping[str, Any], param: str) -> Any:
    """The value of ``param`` (``fusion.beta`` or ``params.yaml:fusion.beta``) or ``_MISSING``."""
    if param in params:
        return params[param]
    matches = [value for key, value in params.items() if key.split(":", 1)[1] == param]
    return matches[0] if matches else _MISSING


def _row(entry: Mapping[str, Any], kind: str, baseline: str, param: str) -> dict[str, Any]:
    data = entry["data"]
    rev = str(entry.get("rev") or data.get("rev") or "")
    name = entry.get("name") or (rev if kind == "workspace" else rev[:7])
    params = _file_values(data.get("params"))
    value = _param_value(params, param)
    return {
        "experiment": name,
        "rev": rev,
        "kind": kind,
        "baseline": baseline,
        "value": None if value is _MISSING else value,
        "has_param": value is not _MISSING,
        "params": params,
        "metrics": _file_values(data.get("metrics")),
    }


def parse_exp_show(entries: Sequence[Mapping[str, Any]], param: str) -> tuple[list[dict], list[str]]:
    """Rows of a ``dvc exp show --json`` payload, and the experiments skipped (``name (state)``).

    Each row is ``{"experiment", "rev", "kind" ("workspace" | "baseline" | "experiment"),
    "baseline", "value" (of ``param``; None where absent), "has_param", "params" and "metrics"
    (both ``{"<file>:<key>": value}``)}``. The workspace row is kept only when it holds results that no
    commit or experiment has (uncommitted changes), so a clean workspace is not a duplicate point.
    """
    rows: list[dict] = []
    workspace: dict | None = None
    skipped: list[str] = []
    for entry in entries:
        if not entry.get("data"):
            skipped.append(f"{entry.get('name') or entry.get('rev')} (unreadable: {entry.get('error')})")
            continue
        if entry.get("rev") == "workspace":
            workspace = _row(entry, "workspace", "", param)
            continue
        baseline = _row(entry, "baseline", "", param)
        baseline["baseline"] = baseline["experiment"]
        rows.append(baseline)
        for experiment in entry.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state")
            revs = experiment.get("revs") or []
            name = experiment.get("name") or (revs[0].get("rev", "")[:7] if revs else "?")
            # revs[0] is the experiment's latest commit (older ones are checkpoints)
            if state not in FINISHED or not revs or revs[0].get("error") or not revs[0].get("data"):
                skipped.append(f"{name} ({state or 'error'})")
                continue
            row = _row(revs[0], "experiment", baseline["experiment"], param)
            row["experiment"] = name
            rows.append(row)
    if workspace is not None:
        fingerprint = (repr(workspace["value"]), json.dumps(workspace["metrics"], sort_keys=True))
        known = {(repr(r["value"]), json.dumps(r["metrics"], sort_keys=True)) for r in rows}
        if fingerprint not in known:
            rows.insert(0, workspace)
    return rows, skipped


def _dvc_command() -> list[str]:
    """The DVC of this interpreter's environment if installed there, else the one on PATH."""
    if importlib.util.find_spec("dvc") is not None:
        return [sys.executable, "-m", "dvc"]
    found = shutil.which("dvc")
    if found is None:
        raise SweepError("dvc not found: install it in this environment (pip install dvc) or put it on PATH")
    return [found]


def exp_show(repo: str | Path = ".") -> list[dict]:
    """The parsed output of ``dvc exp show --json`` in ``repo``."""
    command = [*_dvc_command(), "exp", "show", "--json"]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise SweepError(f"`dvc exp show --json` failed in {Path(repo).resolve()}:\n{result.stderr.strip()}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise SweepError(
            f"`dvc exp show --json` printed no JSON ({error}): {result.stdout[:500]!r}"
        ) from None


def collect(param: str, repo: str | Path = ".") -> list[dict]:
    """Every finished experiment of the current baseline, and the baseline, with ``param``'s value.

    Rows are as in :func:`parse_exp_show`. Raises :class:`SweepError` when there is no finished
    experiment or when no row has ``param``.
    """
    rows, skipped = parse_exp_show(exp_show(repo), param)
    for item in skipped:
        logger.warning("skipping experiment %s; see `dvc queue status` / `dvc queue logs`", item)
    if not any(row["kind"] == "experiment" for row in rows):
        pending = f" (not finished: {', '.join(skipped)})" if skipped else ""
        raise SweepError(
            f"no experiments found in {Path(repo).resolve()}{pending}; run a sweep first, e.g. "
            f"`dvc exp run --queue -S {param}=0.0,0.5,1.0` then `dvc queue start -j 1`"
        )
    if not any(row["has_param"] for row in rows):
        available = sorted({key.split(":", 1)[1] for row in rows for key in row["params"]})
        raise SweepError(
            f"param {param!r} not found in any experiment; available params: {', '.join(available)}"
        )
    return rows


def _components(key: str) -> list[str]:
    return re.split(r"[.:/]", key)


def _path(key: str) -> str:
    """The key inside its file: ``metrics/source.json:main/ua`` -> ``main/ua``."""
    return key.split(":", 1)[-1]


def metric_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every numeric metric key of the rows, in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        for key, value in row["metrics"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                keys.setdefault(key, None)
    return list(keys)


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better: an error such as MAE, not a score like UA.

    >>> [lower_is_better(m) for m in ("metrics/source.json:main/dev_mae", "m:main/mae_high", "m:main/dev_ua")]
    [True, True, False]
    """
    last = _components(metric)[-1]
    return last == "mae" or last.startswith(("mae", "dev_mae"))


def _summary_keys(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """All numeric metric keys, and those of :data:`SUMMARY_FILE` (all of them if it has none)."""
    keys = metric_keys(rows)
    return keys, [key for key in keys if key.startswith(f"{SUMMARY_FILE}:")] or keys


def _main_key(summary: Sequence[str], names: Sequence[str]) -> str | None:
    """The first key of ``summary`` whose path is one of ``names`` (in the order of ``names``)."""
    for name in names:
        for key in summary:
            if _path(key) == name:
                return key
    return None


def _has_main(summary: Sequence[str]) -> bool:
    return any(_path(key).startswith(MAIN_PREFIX) for key in summary)


def default_metric(rows: Sequence[Mapping[str, Any]]) -> str:
    """The main model's test score in ``metrics/source.json``: ``main/ua``, else ``main/mae``.

    >>> rows = [{"metrics": {"metrics/source.json:baselines/concat/ua": 0.6,
    ...                      "metrics/source.json:main/dev_ua": 0.8,
    ...                      "metrics/source.json:main/ua": 0.9}}]
    >>> default_metric(rows)
    'metrics/source.json:main/ua'

    Experiments from before the ``main/`` keys have a nested layout: there it is a key whose last
    part is ``ua``; of several (every baseline has its UA too), the one naming the main model
    ``fusion``, else the least nested one (``source/test/ua`` before ``source/test/audio/ua``),
    else the first; keys that merely end in ``ua`` (``fusion_minus_concat_ua``) only when nothing
    else does.

    >>> rows = [{"metrics": {"metrics/source.json:fusion_minus_concat_ua": 0.1,
    ...                      "metrics/source.json:test.audio.ua": 0.6,
    ...                      "metrics/source.json:test.fusion.ua": 0.9}}]
    >>> default_metric(rows)
    'metrics/source.json:test.fusion.ua'
    """
    keys, summary = _summary_keys(rows)
    main = _main_key(summary, MAIN_TEST)
    if main is not None:
        return main
    if _has_main(summary):
        raise SweepError(
            f"no {' or '.join(MAIN_TEST)} in {SUMMARY_FILE}; pass --metric, one of: {', '.join(keys)}"
        )
    exact = [key for key in summary if _components(key)[-1] == "ua"]
    if exact:
        return min(
            exact,
            key=lambda k: (MAIN_MODEL not in _components(k), len(_components(k)), exact.index(k)),
        )
    loose = [key for key in summary if key.endswith("ua")]
    if loose:
        return loose[0]
    raise SweepError(f"no metric ending in 'ua' in {SUMMARY_FILE}; pass --metric, one of: {', '.join(keys)}")


def default_select(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The dev-split metric that ranks experiments: ``main/dev_ua``, else ``main/dev_mae``; or None.

    Where no row has a ``main/`` key (older experiments), a key whose last part is ``dev_ua`` (or
    ``dev_mae``) outside the baselines, preferring the main model's and the least nested. None
    when there is no dev metric at all: then nothing is ranked or recommended (never the test score).

    >>> default_select([{"metrics": {"m:main/ua": 0.9, "m:main/dev_mae": 0.4, "m:main/mae": 0.5}}])
    'm:main/dev_mae'
    >>> default_select([{"metrics": {"metrics/source.json:main/ua": 0.9}}]) is None
    True
    """
    _, summary = _summary_keys(rows)
    main = _main_key(summary, MAIN_DEV)
    if main is not None or _has_main(summary):
        return main
    for last in (metric_key.dev(m) for m in SCORES):
        exact = [
            key for key in summary
            if _components(key)[-1] == last and not {"baseline", metric_key.BASELINES} & set(_components(key))
        ]  # fmt: skip
        if exact:
            return min(
                exact,
                key=lambda k: (MAIN_MODEL not in _components(k), len(_components(k)), exact.index(k)),
            )
    return None


def resolve_metrics(rows: Sequence[Mapping[str, Any]], metrics: str | Sequence[str] | None) -> list[str]:
    """Full ``<file>:<key>`` names for ``metrics`` (full names or keys unique across files).

    None gives :func:`default_metric`. Raises :class:`SweepError` listing the available keys.
    """
    if metrics is None:
        return [default_metric(rows)]
    keys = metric_keys(rows)
    resolved = []
    for metric in [metrics] if isinstance(metrics, str) else metrics:
        matches = [key for key in keys if key == metric] or [key for key in keys if _path(key) == metric]
        if len(matches) != 1:
            problem = "is ambiguous" if matches else "is not a metric of any experiment"
            candidates = matches or keys
            raise SweepError(f"metric {metric!r} {problem}; available: {', '.join(candidates)}")
        resolved.append(matches[0])
    return resolved


def resolve_select(rows: Sequence[Mapping[str, Any]], select: str | None) -> str | None:
    """The full name of the selection metric ``select`` (as in :func:`resolve_metrics`).

    None gives :func:`default_select` (itself None when the rows have no dev metric).
    """
    return default_select(rows) if select is None else resolve_metrics(rows, select)[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _score(row: Mapping[str, Any], metric: str | None) -> float | None:
    """The row's value of ``metric`` as a float; None when absent, not a number or NaN."""
    value = row["metrics"].get(metric) if metric else None
    return float(value) if _is_number(value) and not math.isnan(value) else None


def _sort_key(row: Mapping[str, Any]) -> tuple:
    """Order by the param's value (numbers, then other values, then rows without it)."""
    value = row["value"]
    order = {"workspace": 0, "baseline": 1, "experiment": 2}[row["kind"]]
    if _is_number(value):
        return (0, float(value), "", order, row["experiment"])
    return (1 if value is not None else 2, 0.0, str(value), order, row["experiment"])


def _ranked(rows: Sequence[Mapping[str, Any]], select: str | None) -> list[tuple[int | None, Mapping]]:
    """Rows best first by ``select`` (ties and rows without it by the param's value), with ranks.

    Ties share a rank (1, 1, 3); rows lacking ``select`` come last with rank None. With no
    ``select`` every rank is None and rows are in the param's order.
    """
    sign = 1.0 if select is not None and lower_is_better(select) else -1.0

    def order(row: Mapping[str, Any]) -> tuple:
        score = _score(row, select)
        return (score is None, 0.0 if score is None else sign * score, *_sort_key(row))

    ranked: list[tuple[int | None, Mapping]] = []
    previous: float | None = None
    rank = 0
    for position, row in enumerate(sorted(rows, key=order), start=1):
        score = _score(row, select)
        if score is not None and score != previous:
            rank, previous = position, score
        ranked.append((rank if score is not None else None, row))
    return ranked


def best_row(rows: Sequence[Mapping[str, Any]], metric: str | None) -> Mapping[str, Any] | None:
    """The row with the best value of ``metric`` (ties: by the param's value), or None if none has it."""
    ranked = _ranked(rows, metric)
    return ranked[0][1] if ranked and ranked[0][0] is not None else None


def _cell(value: Any, metric: bool = False) -> str:
    """A table cell: metrics as ``0.9706`` (4 decimals, as in metrics/*.json), params as given."""
    if value is None:
        return "—"
    if metric and isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", r"\|")


def _metric_cell(row: Mapping[str, Any], metric: str) -> str:
    """``0.8123 [0.78, 0.84]`` when ``<metric>_low`` and ``<metric>_high`` exist, else ``0.8123``."""
    values = row["metrics"]
    cell = _cell(values.get(metric), metric=True)
    low, high = values.get(metric_key.low(metric)), values.get(metric_key.high(metric))
    if values.get(metric) is not None and _is_number(low) and _is_number(high):
        cell += f" [{low:.2f}, {high:.2f}]"
    return cell


def _label(row: Mapping[str, Any]) -> str:
    return row["experiment"] if row["kind"] == "experiment" else f"{row['experiment']} ({row['kind']})"


def _direction(metric: str) -> str:
    return "lower is better" if lower_is_better(metric) else "higher is better"


def _best_line(best: Mapping[str, Any] | None, select: str) -> str:
    """Which row is best by the dev metric and how to get it into the workspace."""
    lead = f"Best by the dev metric `{select}` ({_direction(select)})"
    if best is None:
        return f"{lead}: none — no experiment has this metric, so none is recommended."
    name = best["experiment"]
    if best["kind"] == "experiment":
        return f"{lead}: **{name}**. Apply it with `dvc exp apply {name}`, then commit it."
    if best["kind"] == "baseline":
        return (
            f"{lead}: the baseline commit **{name}**; no experiment beats it, so there is nothing to apply."
        )
    return f"{lead}: the uncommitted **workspace**; commit it to keep it (there is no experiment to apply)."


def sweep_markdown(
    rows: Sequence[Mapping[str, Any]], param: str, metrics: Sequence[str], select: str | None = None
) -> str:
    """A Markdown table ranked by the dev metric ``select``, then a note on which one to apply.

    Columns: ``rank (dev)``, experiment, ``param``'s value, ``select``, then each (test) metric
    in ``metrics`` with its ``_low``/``_high`` interval where present. Rows are best first by
    ``select``; rows lacking it come last. ``select`` None means :func:`default_select`; if the rows
    have no dev metric either, rows are in the param's order and nothing is recommended. Test
    scores never rank: when the best by the first of ``metrics`` is another experiment, one
    sentence says so, without recommending it.

    >>> rows = [{"experiment": "b", "kind": "experiment", "value": 1.0,
    ...          "metrics": {"m:main/dev_ua": 0.7, "m:main/ua": 0.9}},
    ...         {"experiment": "a", "kind": "experiment", "value": 0.0,
    ...          "metrics": {"m:main/dev_ua": 0.8, "m:main/ua": 0.7, "m:main/ua_low": 0.66,
    ...                      "m:main/ua_high": 0.74}}]
    >>> print(sweep_markdown(rows, "fusion.beta", ["m:main/ua"]))  # doctest: +NORMALIZE_WHITESPACE
    | rank (dev) | experiment | fusion.beta | m:main/dev_ua | m:main/ua |
    |---|---|---|---|---|
    | 1 | a | 0.0 | 0.8000 | 0.7000 [0.66, 0.74] |
    | 2 | b | 1.0 | 0.7000 | 0.9000 |
    <BLANKLINE>
    Best by the dev metric `m:main/dev_ua` (higher is better): **a**. Apply it with `dvc exp apply a`,
    then commit it.
    <BLANKLINE>
    Test scores (`m:main/ua`) are shown for information only and are not used for selection.
    <BLANKLINE>
    By the test metric `m:main/ua` alone **b** would come first; that is reported for transparency
    only, since picking it would be model selection on the test split.
    """
    if select is None:
        select = default_select(rows)
    shown = [metric for metric in metrics if metric != select]
    lines = [
        "| " + " | ".join(["rank (dev)", "experiment", param, *([select] if select else []), *shown]) + " |",
        "|" + "---|" * (3 + bool(select) + len(shown)),
    ]
    for rank, row in _ranked(rows, select):
        cells = [
            _cell(rank),
            _label(row),
            _cell(row["value"]),
            *([_metric_cell(row, select)] if select else []),
            *(_metric_cell(row, metric) for metric in shown),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    test_note = (
        f"Test scores ({', '.join(f'`{m}`' for m in shown)}) are shown for information only "
        "and are not used for selection."
        if shown
        else "Test scores are not used for selection."
    )
    if select is None:
        notes = [
            f"No dev-split metric in these experiments (expected `{SUMMARY_FILE}:{MAIN_DEV[0]}` or "
            f"`{MAIN_DEV[1]}`), so none is ranked or recommended; pass `--select METRIC` to rank by one.",
            test_note,
        ]
        return "\n".join(lines) + "\n\n" + "\n\n".join(notes)
    best = best_row(rows, select)
    notes = [_best_line(best, select), test_note]
    best_test = best_row(rows, shown[0]) if shown else None
    if best is not None and best_test is not None and best_test is not best:
        notes.append(
            f"By the test metric `{shown[0]}` alone **{_label(best_test)}** would come first; that is "
            "reported for transparency only, since picking it would be model selection on the test split."
        )
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes)


def plot_sweep(
    rows: Sequence[Mapping[str, Any]],
    param: str,
    metrics: Sequence[str],
    path: str | Path,
    select: str | None = None,
) -> Path:
    """Each metric (and the dev metric ``select``) against ``param``'s value, as a PNG.

    One labelled point per experiment; a metric's ``_low``/``_high`` interval is drawn as error
    bars where every point has it, and the best row by ``select`` is ringed.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: runs under dvc/CI with no display
    import matplotlib.pyplot as plt  # after matplotlib.use, so pyplot never picks a GUI backend

    points = [row for row in sorted(rows, key=_sort_key) if row["value"] is not None]
    numeric = all(_is_number(row["value"]) for row in points)
    categories = list(dict.fromkeys(str(row["value"]) for row in points))

    def position(row: Mapping[str, Any]) -> float:
        return float(row["value"]) if numeric else float(categories.index(str(row["value"])))

    series = [*metrics, *([select] if select and select not in metrics else [])]
    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    for index, metric in enumerate(series):
        plotted = [row for row in points if _score(row, metric) is not None]
        xs = [position(row) for row in plotted]
        ys = [_score(row, metric) for row in plotted]
        lows = [row["metrics"].get(metric_key.low(metric)) for row in plotted]
        highs = [row["metrics"].get(metric_key.high(metric)) for row in plotted]
        label = f"{metric} (dev, selection)" if metric == select else f"{metric} (test)"
        if plotted and all(_is_number(v) for v in (*lows, *highs)):
            errors = [
                [max(y - low, 0.0) for y, low in zip(ys, lows, strict=True)],
                [max(high - y, 0.0) for y, high in zip(ys, highs, strict=True)],
            ]
            axes.errorbar(xs, ys, yerr=errors, marker="o", linestyle=":", capsize=3, label=label)
        else:
            axes.plot(xs, ys, marker="o", linestyle=":" if metric != select else "--", label=label)
        for row, x, y in zip(plotted, xs, ys, strict=True) if index == 0 else ():  # names once
            axes.annotate(row["experiment"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    best = best_row(points, select) if select else None
    if best is not None:
        axes.scatter(
            [position(best)], [_score(best, select)], s=160, facecolors="none", edgecolors="black",
            label=f"best by dev: {best['experiment']}",
        )  # fmt: skip
    if not numeric:
        axes.set_xticks(range(len(categories)), categories)
    axes.margins(x=0.1)  # room for the point labels at both ends
    axes.set_xlabel(param)
    axes.set_ylabel(series[0] if len(series) == 1 else "metric")
    axes.set_title(f"Sweep of {param} ({sum(r['kind'] == 'experiment' for r in points)} experiments)")
    axes.grid(alpha=0.3)
    if len(series) > 1 or best is not None:
        axes.legend(fontsize="small")
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.tight_layout()
        figure.savefig(out_path, dpi=120, format="png")
    finally:
        plt.close(figure)
    return out_path


def write_sweep(
    rows: Sequence[Mapping[str, Any]],
    param: str,
    metric: str | Sequence[str] | None,
    out_dir: str | Path,
    select: str | None = None,
) -> tuple[Path, Path]:
    """Write ``sweep.md`` (the table of :func:`sweep_markdown`) and ``sweep.png`` to ``out_dir``.

    ``metric`` is one name or several (``<file>:<key>`` or a key unique across files), or None
    for :func:`default_metric`: the test scores shown. ``select`` names the dev metric that ranks
    the rows, resolved the same way, or None for :func:`default_select`. Returns
    ``(markdown_path, png_path)``.
    """
    metrics = resolve_metrics(rows, metric)
    selection = resolve_select(rows, select)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, png_path = out_dir / "sweep.md", out_dir / "sweep.png"
    markdown_path.write_text(sweep_markdown(rows, param, metrics, selection) + "\n")
    plot_sweep(rows, param, metrics, png_path, selection)
    logger.info("wrote %s and %s", markdown_path, png_path)
    return markdown_path, png_path


def main(argv: Sequence[str] | None = None) -> str:
    """``python -m mer.sweep --param fusion.beta``: write the sweep's table and plot, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--param", required=True, help="the swept param, e.g. fusion.beta")
    parser.add_argument(
        "--metric",
        action="append",
        help="test metric(s) shown, for information: <file>:<key> or a key unique across metrics "
        "files (repeatable); default: the main model's main/ua (or main/mae)",
    )
    parser.add_argument(
        "--select",
        metavar="METRIC",
        help="the dev-split metric that ranks experiments and picks the one to apply (named as for "
        "--metric; metrics named mae* are lower-is-better); default: main/dev_ua (or main/dev_mae)",
    )
    parser.add_argument("--out", default="reports/sweep", help="folder for sweep.md and sweep.png")
    parser.add_argument("--repo", default=".", help="the DVC repository holding the experiments")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        rows = collect(args.param, args.repo)
        markdown_path, _ = write_sweep(rows, args.param, args.metric, args.out, args.select)
    except SweepError as error:
        parser.exit(2, f"error: {error}\n")
    markdown = markdown_path.read_text()
    print(markdown, end="")
    return markdown


if __name__ == "__main__":
    main()
