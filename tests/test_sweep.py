"""mer.sweep: a DVC experiment sweep collected into one table and one plot, ranked on dev.

Fast tests parse a payload shaped like DVC 3.67's ``dvc exp show --json`` (workspace row, then
the baseline commit with its experiments nested under it), with flat ``main/...`` metric keys
as ``metrics/source.json`` now writes them (and the older nested layout where it matters). The
key property: experiments are ranked and recommended by the dev metric, never by the test one.
The slow test runs the real recipe on the tiny reproduced repo: ``dvc exp run --queue -S
fusion.beta=0.0,1.0``, ``dvc queue start -j 1`` polled through ``dvc queue status``, then ``dvc
exp show``, the collector and ``dvc exp apply``. The queue (not ``dvc exp run --run-all``) is what
researchers use, and its worker runs reliably here, so the test exercises it.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from mer import sweep
from mer.sweep import (
    SweepError,
    collect,
    default_metric,
    default_select,
    lower_is_better,
    parse_exp_show,
    resolve_metrics,
    write_sweep,
)
from tests.pipeline_utils import copy_repo, ran_stages, run

SOURCE, TRANSFER = "metrics/source.json", "metrics/transfer.json"
UA, DEV_UA = f"{SOURCE}:main/ua", f"{SOURCE}:main/dev_ua"
MAE, DEV_MAE = f"{SOURCE}:main/mae", f"{SOURCE}:main/dev_mae"


def _source_metrics(test: float, dev: float | None, style: str) -> dict:
    """``metrics/source.json`` as written by evaluate: flat keys (``flat``: a classifier's UA,
    ``regression``: MAE), or the older nested layout (``nested``, no dev metric). Baseline keys
    come first, so a collector picking the first key that ends in ``ua`` picks the wrong one."""
    dev = test - 0.05 if dev is None else dev
    if style == "nested":
        return {"fusion_minus_concat_ua": 0.1, "test": {"audio": {"ua": 0.6}, "fusion": {"ua": test}}}
    if style == "regression":
        return {"baselines/concat/mae": 0.7, "baselines/concat/dev_mae": 0.1, "main/mae": test,
                "main/mae_low": test - 0.05, "main/mae_high": test + 0.05, "main/dev_mae": dev,
                "main/n_seeds": 3}  # fmt: skip
    return {"baselines/concat/ua": 0.6, "baselines/concat/delta_ua": test - 0.6,
            "baselines/concat/dev_ua": 0.99, "main/ua": test, "main/ua_low": test - 0.03,
            "main/ua_high": test + 0.03, "main/wa": test - 0.01, "main/f1_weighted": test - 0.02,
            "main/dev_ua": dev, "main/dev_wa": 1 - dev, "main/n_seeds": 3}  # fmt: skip


def _data(rev: str, beta, ua: float, dev: float | None = None, style: str = "flat") -> dict:
    return {
        "rev": rev,
        "timestamp": None,
        "params": {"params.yaml": {"data": {"fusion": {"beta": beta, "mode": "beta"}, "train": {"seed": 0}}}},
        "metrics": {
            SOURCE: {"data": _source_metrics(ua, dev, style)},
            TRANSFER: {"data": {"plain": {"50": {"ua": ua - 0.2}}}},
        },
        "deps": {},
        "outs": {},
        "meta": {},
    }


def _experiment(
    name: str, beta, ua: float, state: str = "success", dev: float | None = None, style: str = "flat"
) -> dict:
    rev = name.encode().hex().ljust(40, "0")[:40]
    error = {"msg": "Experiment run failed", "type": ""} if state == "failed" else None
    return {
        "revs": [
            {"rev": rev, "name": name, "data": _data(rev, beta, ua, dev, style), "error": error,
             "experiments": None}
        ],
        "executor": {"state": state, "name": "dvc-task", "local": {}},
        "name": name,
    }  # fmt: skip


def _payload(
    experiments: list[dict],
    workspace_beta=0.5,
    workspace_ua: float | None = None,
    base_ua: float = 0.9,
    base_dev: float | None = None,
    style: str = "flat",
) -> list[dict]:
    """Workspace row, then the baseline (beta 0.5) with ``experiments``; a clean workspace by default."""
    base = "be441bee989edcd5e5f86f204a2019dbee8cd734"
    base_data = _data(base, 0.5, base_ua, base_dev, style)
    if workspace_ua is None:
        workspace = {**base_data, "rev": "workspace"}  # clean: the workspace is the baseline
    else:
        workspace = _data("workspace", workspace_beta, workspace_ua, None, style)
    return [
        {"rev": "workspace", "name": None, "data": workspace, "error": None, "experiments": None},
        {"rev": base, "name": "main", "data": base_data, "error": None, "experiments": experiments},
    ]


def _table(markdown: str) -> list[list[str]]:
    """The cells of the table's body rows (after the header and the ``|---|`` line)."""
    rows = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in rows]


def _note(markdown: str, start: str) -> str:
    """The one paragraph under the table that starts with ``start``."""
    (paragraph,) = [p for p in markdown.split("\n\n") if p.startswith(start)]
    return paragraph


def _sweep(style: str = "flat") -> list[dict]:
    return [
        _experiment("toxic-ambo", 1.0, 0.95, style=style),
        _experiment("prosy-sacs", 0.0, 0.8, style=style),
    ]


SWEEP = _sweep()
# dev and test disagree: keen-dart is best on dev, lush-moss on test; by the param's value
# (lush-moss 0.0 < main 0.5 < keen-dart 1.0) the order is the reverse of the dev order
DISAGREE = [
    _experiment("lush-moss", 0.0, ua=0.90, dev=0.70),
    _experiment("keen-dart", 1.0, ua=0.70, dev=0.80),
]


def test_parse_keeps_finished_experiments_and_the_baseline():
    payload = _payload(
        [*SWEEP, _experiment("obese-hunt", -1.0, 0.9, "failed"), _experiment("later", 2.0, 0, "queued")]
    )
    rows, skipped = parse_exp_show(payload, "fusion.beta")
    assert [(r["experiment"], r["kind"], r["value"]) for r in rows] == [
        ("main", "baseline", 0.5), ("toxic-ambo", "experiment", 1.0), ("prosy-sacs", "experiment", 0.0)
    ]  # fmt: skip
    assert skipped == ["obese-hunt (failed)", "later (queued)"]
    # flat slash keys stay whole; nested dicts (old layouts, other files) are dotted
    assert rows[1]["metrics"][UA] == 0.95
    assert rows[1]["metrics"][f"{SOURCE}:baselines/concat/delta_ua"] == pytest.approx(0.35)
    assert rows[1]["metrics"][f"{TRANSFER}:plain.50.ua"] == pytest.approx(0.75)
    assert rows[1]["baseline"] == "main"
    old, _ = parse_exp_show(_payload(_sweep("nested"), style="nested"), "fusion.beta")
    assert old[0]["metrics"][f"{SOURCE}:test.fusion.ua"] == 0.9
    # a param given with its file resolves the same
    assert parse_exp_show(payload, "params.yaml:fusion.beta")[0][2]["value"] == 0.0


def test_workspace_row_only_when_it_holds_uncommitted_results():
    rows, _ = parse_exp_show(_payload(SWEEP), "fusion.beta")
    assert "workspace" not in {r["kind"] for r in rows}  # clean: same as the baseline
    rows, _ = parse_exp_show(_payload(SWEEP, workspace_beta=0.3, workspace_ua=0.7), "fusion.beta")
    assert rows[0]["kind"] == "workspace" and rows[0]["value"] == 0.3


def test_default_metrics_are_the_main_models_test_and_dev_scores():
    rows, _ = parse_exp_show(_payload(SWEEP), "fusion.beta")
    # not baselines/concat/ua, seen first, nor the baseline's dev_ua
    assert (default_metric(rows), default_select(rows)) == (UA, DEV_UA)
    rows, _ = parse_exp_show(_payload(_sweep("regression"), style="regression"), "fusion.beta")
    assert (default_metric(rows), default_select(rows)) == (MAE, DEV_MAE)
    assert lower_is_better(DEV_MAE) and lower_is_better(MAE) and not lower_is_better(DEV_UA)
    # older experiments: the nested main-model UA, and no dev metric to select with
    rows, _ = parse_exp_show(_payload(_sweep("nested"), style="nested"), "fusion.beta")
    assert default_metric(rows) == f"{SOURCE}:test.fusion.ua"  # not fusion_minus_concat_ua / audio
    assert default_select(rows) is None
    flat = [{"metrics": {f"{SOURCE}:source/test/audio/ua": 0.6, f"{SOURCE}:source/test/ua": 0.9}}]
    assert default_metric(flat) == f"{SOURCE}:source/test/ua"  # old slash names: the least nested
    with pytest.raises(SweepError, match="pass --metric, one of: m:loss"):
        default_metric([{"metrics": {"m:loss": 0.3}}])
    # main/ keys but neither main/ua nor main/mae: no guessing from the baselines
    with pytest.raises(SweepError, match=r"no main/ua or main/mae.*pass --metric"):
        default_metric([{"metrics": {f"{SOURCE}:baselines/concat/ua": 0.6, f"{SOURCE}:main/wa": 0.9}}])
    assert default_select([{"metrics": {f"{SOURCE}:baselines/concat/dev_ua": 0.6, UA: 0.9}}]) is None


def test_metric_names_resolve_or_list_what_exists():
    rows, _ = parse_exp_show(_payload(SWEEP), "fusion.beta")
    assert resolve_metrics(rows, "main/ua") == [UA]
    assert resolve_metrics(rows, "plain.50.ua") == [f"{TRANSFER}:plain.50.ua"]
    assert resolve_metrics(rows, [DEV_UA, "main/wa"]) == [DEV_UA, f"{SOURCE}:main/wa"]
    with pytest.raises(SweepError, match=r"'main/uar' is not a metric.*metrics/source\.json:main/ua"):
        resolve_metrics(rows, "main/uar")


def test_table_is_ranked_by_dev_not_by_test_or_the_param(tmp_path):
    rows, _ = parse_exp_show(_payload(DISAGREE, base_ua=0.80, base_dev=0.75), "fusion.beta")
    markdown_path, png_path = write_sweep(rows, "fusion.beta", None, tmp_path / "sweep")
    markdown = markdown_path.read_text()
    assert markdown.splitlines()[0] == f"| rank (dev) | experiment | fusion.beta | {DEV_UA} | {UA} |"
    assert _table(markdown) == [
        ["1", "keen-dart", "1.0", "0.8000", "0.7000 [0.67, 0.73]"],
        ["2", "main (baseline)", "0.5", "0.7500", "0.8000 [0.77, 0.83]"],
        ["3", "lush-moss", "0.0", "0.7000", "0.9000 [0.87, 0.93]"],
    ]
    best = _note(markdown, "Best by the dev metric")
    assert f"`{DEV_UA}` (higher is better): **keen-dart**" in best
    assert "dvc exp apply keen-dart" in best and "lush-moss" not in best
    assert re.findall(r"dvc exp apply (\S+?)`", markdown) == ["keen-dart"]  # the only command offered
    assert _note(markdown, "Test scores") == (
        f"Test scores (`{UA}`) are shown for information only and are not used for selection."
    )
    disagreement = _note(markdown, "By the test metric")
    assert "**lush-moss**" in disagreement and "apply" not in disagreement
    assert png_path.stat().st_size > 1000


def test_regression_ranks_by_dev_mae_lower_first(tmp_path):
    experiments = [
        _experiment("wild-reed", 0.0, ua=0.35, dev=0.55, style="regression"),
        _experiment("calm-fern", 1.0, ua=0.60, dev=0.40, style="regression"),
    ]
    payload = _payload(experiments, base_ua=0.50, base_dev=0.50, style="regression")
    rows, _ = parse_exp_show(payload, "fusion.beta")
    markdown = write_sweep(rows, "fusion.beta", None, tmp_path)[0].read_text()
    assert markdown.splitlines()[0] == f"| rank (dev) | experiment | fusion.beta | {DEV_MAE} | {MAE} |"
    assert [cells[:4] for cells in _table(markdown)] == [
        ["1", "calm-fern", "1.0", "0.4000"], ["2", "main (baseline)", "0.5", "0.5000"],
        ["3", "wild-reed", "0.0", "0.5500"],
    ]  # fmt: skip
    assert _table(markdown)[0][4] == "0.6000 [0.55, 0.65]"
    best = _note(markdown, "Best by the dev metric")
    assert "(lower is better): **calm-fern**" in best and "dvc exp apply calm-fern" in best
    # the lowest test MAE (wild-reed) is named as a disagreement, not recommended
    assert "**wild-reed**" in _note(markdown, "By the test metric")
    assert re.findall(r"dvc exp apply (\S+?)`", markdown) == ["calm-fern"]


def test_select_overrides_the_ranking_metric(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sweep, "exp_show", lambda repo: _payload(DISAGREE, base_ua=0.80, base_dev=0.75))
    # main/dev_wa = 1 - dev_ua here, so it reverses the dev_ua ranking
    markdown = sweep.main(["--param", "fusion.beta", "--select", "main/dev_wa", "--out", str(tmp_path)])
    dev_wa = f"{SOURCE}:main/dev_wa"
    assert markdown.splitlines()[0] == f"| rank (dev) | experiment | fusion.beta | {dev_wa} | {UA} |"
    assert [cells[1] for cells in _table(markdown)] == ["lush-moss", "main (baseline)", "keen-dart"]
    assert "dvc exp apply lush-moss" in _note(markdown, "Best by the dev metric")
    assert "By the test metric" not in markdown  # lush-moss is best on both now
    assert capsys.readouterr().out == markdown == (tmp_path / "sweep.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--param", "fusion.beta", "--select", "main/dev_f1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "error: metric 'main/dev_f1' is not a metric" in capsys.readouterr().err


def test_ties_share_a_rank_and_rows_without_the_dev_metric_come_last(tmp_path):
    experiments = [
        _experiment("old-run", -1.0, 0.99, style="nested"),  # from before main/dev_ua existed
        _experiment("twin-b", 1.0, ua=0.70, dev=0.90),
        _experiment("twin-a", 0.0, ua=0.75, dev=0.90),
    ]
    rows, _ = parse_exp_show(_payload(experiments, base_dev=0.80), "fusion.beta")
    markdown = write_sweep(rows, "fusion.beta", None, tmp_path)[0].read_text()
    assert [cells[:3] for cells in _table(markdown)] == [
        ["1", "twin-a", "0.0"], ["1", "twin-b", "1.0"], ["3", "main (baseline)", "0.5"],
        ["—", "old-run", "-1.0"],
    ]  # fmt: skip
    assert _table(markdown)[-1][3:] == ["—", "—"]
    assert "**twin-a**" in _note(markdown, "Best by the dev metric")  # ties: the param's order


def test_without_a_dev_metric_nothing_is_recommended(tmp_path):
    rows, _ = parse_exp_show(_payload(_sweep("nested"), style="nested"), "fusion.beta")
    markdown_path, png_path = write_sweep(rows, "fusion.beta", None, tmp_path / "sweep")
    markdown = markdown_path.read_text()
    metric = f"{SOURCE}:test.fusion.ua"
    assert markdown.splitlines()[0] == f"| rank (dev) | experiment | fusion.beta | {metric} |"
    assert _table(markdown) == [
        ["—", "prosy-sacs", "0.0", "0.8000"], ["—", "main (baseline)", "0.5", "0.9000"],
        ["—", "toxic-ambo", "1.0", "0.9500"],
    ]  # fmt: skip
    assert "dvc exp apply" not in markdown and "Best by" not in markdown
    assert "pass `--select METRIC`" in _note(markdown, "No dev-split metric")
    assert "not used for selection" in markdown
    assert png_path.name == "sweep.png" and png_path.stat().st_size > 1000
    # a categorical param plots too, with several metrics
    rows, _ = parse_exp_show(_payload(SWEEP), "fusion.mode")
    assert write_sweep(rows, "fusion.mode", ["main/ua", "plain.50.ua"], tmp_path)[1].stat().st_size > 0


def test_collect_errors_name_the_fix(monkeypatch):
    monkeypatch.setattr(sweep, "exp_show", lambda repo: _payload([_experiment("later", 2.0, 0, "running")]))
    with pytest.raises(
        SweepError, match=r"no experiments found.*later \(running\).*dvc exp run --queue -S fusion\.beta="
    ):
        collect("fusion.beta")
    monkeypatch.setattr(sweep, "exp_show", lambda repo: _payload(SWEEP))
    with pytest.raises(
        SweepError, match=r"param 'fusion\.bta' not found.*fusion\.beta, fusion\.mode, train\.seed"
    ):
        collect("fusion.bta")


def test_main_reports_errors_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setattr(sweep, "exp_show", lambda repo: _payload(SWEEP))
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--param", "fusion.beta", "--metric", "nope"])
    assert exit_info.value.code == 2
    assert "error: metric 'nope' is not a metric" in capsys.readouterr().err


# --- the real recipe on the tiny reproduced repo --------------------------------------------

QUEUE_TIMEOUT_S = 600


def _queue_states(repo) -> dict[str, str]:
    """``{experiment name: status}`` from ``dvc queue status`` (Queued/Running/Success/Failed)."""
    states = {}
    for line in run(["dvc", "queue", "status"], repo).splitlines()[1:]:
        fields = line.split()
        if not fields or line.startswith("Worker status"):
            continue
        states[fields[1]] = fields[-1]
    return states


@pytest.fixture(scope="module")
def swept(reproduced_repo, tmp_path_factory):
    """A copy of the tiny repo after ``dvc exp run --queue -S fusion.beta=0.0,1.0`` + ``dvc queue start``.

    Returns ``(repo, {beta: experiment name})``.
    """
    repo = copy_repo(reproduced_repo, tmp_path_factory.mktemp("sweep") / "repo")
    queued = run(["dvc", "exp", "run", "--queue", "-S", "fusion.beta=0.0,1.0"], repo)
    names = re.findall(r"Queued experiment '([^']+)'", queued)
    assert len(names) == 2, queued
    started = time.monotonic()
    run(["dvc", "queue", "start", "-j", "1"], repo)
    while True:
        all_states = _queue_states(repo)
        states = {name: all_states.get(name) for name in names}
        if all(state in ("Success", "Failed") for state in states.values()):
            break
        if time.monotonic() - started > QUEUE_TIMEOUT_S:
            logs = {name: run(["dvc", "queue", "logs", name], repo, check=False)[-2000:] for name in names}
            pytest.fail(f"queue not done after {QUEUE_TIMEOUT_S} s: {states}\n{logs}")
        time.sleep(5)
    failed = {name: run(["dvc", "queue", "logs", name], repo, check=False)[-3000:]
              for name, state in states.items() if state == "Failed"}  # fmt: skip
    assert not failed, f"queued experiments failed:\n{failed}"
    print(f"sweep of 2 queued experiments: {time.monotonic() - started:.0f} s")
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo))
    by_beta = {
        exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["fusion"]["beta"]: exp["name"]
        for row in shown
        for exp in row.get("experiments") or []
    }
    yield repo, by_beta
    run(["dvc", "queue", "stop"], repo, check=False)  # the worker exits when idle; make sure


@pytest.mark.slow
def test_each_queued_experiment_reruns_only_train_transfer_evaluate(swept):
    repo, by_beta = swept
    for name in by_beta.values():
        # the queue runs each experiment in a temp copy; its log is the `dvc exp run` output
        ran = ran_stages(run(["dvc", "queue", "logs", name], repo))
        assert {"train@main", "transfer", "evaluate"} <= ran, ran
        # nothing upstream of train; stages downstream of evaluate (a report) may follow it
        stages = ("metadata", "extract", "adapt", "baseline", "ablation")
        upstream = {s for s in ran if s.split("@")[0] in stages}
        assert not upstream, f"fusion.beta re-ran {sorted(upstream)}"


@pytest.mark.slow
def test_exp_show_only_changed_lists_both_betas(swept):
    repo, _ = swept
    shown = json.loads(run(["dvc", "exp", "show", "--only-changed", "--json"], repo))
    experiments = [exp for row in shown for exp in row.get("experiments") or []]
    betas = sorted(
        e["revs"][0]["data"]["params"]["params.yaml"]["data"]["fusion"]["beta"] for e in experiments
    )
    assert betas == [0.0, 1.0]
    assert {e["executor"]["state"] for e in experiments} == {"success"}


@pytest.mark.slow
def test_collector_tables_and_plots_the_sweep(swept, tmp_path):
    repo, by_beta = swept
    rows = collect("fusion.beta", repo)
    experiments = sorted((r["value"], r["experiment"]) for r in rows if r["kind"] == "experiment")
    assert experiments == sorted(by_beta.items())
    baseline_beta = yaml.safe_load((repo / "params.yaml").read_text())["fusion"]["beta"]
    assert [r["value"] for r in rows if r["kind"] == "baseline"] == [baseline_beta]
    assert "workspace" not in {r["kind"] for r in rows}  # clean workspace = the baseline
    metric, select = default_metric(rows), default_select(rows)
    assert (metric, select) == (UA, DEV_UA)  # the main model's test UA, ranked by its dev UA
    assert all(isinstance(r["metrics"][key], float) for r in rows for key in (metric, select))

    markdown = sweep.main(["--param", "fusion.beta", "--repo", str(repo), "--out", str(tmp_path / "sweep")])
    assert markdown.splitlines()[0] == f"| rank (dev) | experiment | fusion.beta | {select} | {metric} |"
    table = _table(markdown)
    assert sorted(cells[1] for cells in table) == sorted([by_beta[0.0], by_beta[1.0], "main (baseline)"])
    devs = [float(cells[3].split()[0]) for cells in table]
    assert devs == sorted(devs, reverse=True)  # best dev first, whatever the test scores
    best = _note(markdown, "Best by the dev metric")
    if table[0][1] in by_beta.values():
        assert f"dvc exp apply {table[0][1]}" in best
    else:
        assert "dvc exp apply" not in markdown and "nothing to apply" in best
    assert "not used for selection" in markdown
    assert (tmp_path / "sweep/sweep.md").read_text() == markdown
    assert (tmp_path / "sweep/sweep.png").stat().st_size > 1000

    with pytest.raises(SweepError, match=r"param 'fusion\.bta' not found.*fusion\.beta"):
        collect("fusion.bta", repo)
    with pytest.raises(SweepError, match=f"'no/such/ua' is not a metric.*{re.escape(metric)}"):
        write_sweep(rows, "fusion.beta", "no/such/ua", tmp_path)


@pytest.mark.slow
def test_exp_apply_puts_the_experiment_in_the_workspace(swept):
    repo, by_beta = swept
    rows = {r["experiment"]: r for r in collect("fusion.beta", repo)}
    run(["dvc", "exp", "apply", by_beta[1.0]], repo)
    assert yaml.safe_load((repo / "params.yaml").read_text())["fusion"]["beta"] == 1.0
    applied = json.loads((repo / SOURCE).read_text())
    metric = default_metric(list(rows.values()))
    key = metric.split(":", 1)[1]
    # flat keys (main/ua) as evaluate writes them; nested (test.fusion.ua) in older layouts
    value = applied.get(key)
    if value is None:
        value = applied
        for part in key.split("."):
            value = value[part]
    assert value == rows[by_beta[1.0]]["metrics"][metric]
    # the applied workspace equals that experiment, so the collector shows no extra row
    assert "workspace" not in {r["kind"] for r in collect("fusion.beta", repo)}
