"""mer.sweep: a DVC experiment sweep collected into one table and one plot.

Fast tests parse a payload shaped like DVC 3.67's ``dvc exp show --json`` (workspace row, then
the baseline commit with its experiments nested under it). The slow test runs the real recipe
on the tiny reproduced repo: ``dvc exp run --queue -S fusion.beta=0.0,1.0``, ``dvc queue start
-j 1`` polled through ``dvc queue status``, then ``dvc exp show``, the collector and
``dvc exp apply``. The queue (not ``dvc exp run --run-all``) is what researchers use, and its
worker runs reliably here, so the test exercises it.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from mer import sweep
from mer.sweep import SweepError, collect, default_metric, parse_exp_show, resolve_metrics, write_sweep
from tests.pipeline_utils import copy_repo, ran_stages, run

SOURCE, TRANSFER = "metrics/source.json", "metrics/transfer.json"


def _data(rev: str, beta, ua: float) -> dict:
    return {
        "rev": rev,
        "timestamp": None,
        "params": {"params.yaml": {"data": {"fusion": {"beta": beta, "mode": "beta"}, "train": {"seed": 0}}}},
        "metrics": {
            SOURCE: {
                "data": {"fusion_minus_concat_ua": 0.1, "test": {"audio": {"ua": 0.6}, "fusion": {"ua": ua}}}
            },
            TRANSFER: {"data": {"plain": {"50": {"ua": ua - 0.2}}}},
        },
        "deps": {},
        "outs": {},
        "meta": {},
    }


def _experiment(name: str, beta, ua: float, state: str = "success") -> dict:
    rev = name.encode().hex().ljust(40, "0")[:40]
    error = {"msg": "Experiment run failed", "type": ""} if state == "failed" else None
    return {
        "revs": [
            {"rev": rev, "name": name, "data": _data(rev, beta, ua), "error": error, "experiments": None}
        ],
        "executor": {"state": state, "name": "dvc-task", "local": {}},
        "name": name,
    }


def _payload(experiments: list[dict], workspace_beta=0.5, workspace_ua: float = 0.9) -> list[dict]:
    base = "be441bee989edcd5e5f86f204a2019dbee8cd734"
    return [
        {"rev": "workspace", "name": None, "data": _data("workspace", workspace_beta, workspace_ua),
         "error": None, "experiments": None},
        {"rev": base, "name": "main", "data": _data(base, 0.5, 0.9), "error": None,
         "experiments": experiments},
    ]  # fmt: skip


SWEEP = [_experiment("toxic-ambo", 1.0, 0.95), _experiment("prosy-sacs", 0.0, 0.8)]


def test_parse_keeps_finished_experiments_and_the_baseline():
    payload = _payload(
        [*SWEEP, _experiment("obese-hunt", -1.0, 0.9, "failed"), _experiment("later", 2.0, 0, "queued")]
    )
    rows, skipped = parse_exp_show(payload, "fusion.beta")
    assert [(r["experiment"], r["kind"], r["value"]) for r in rows] == [
        ("main", "baseline", 0.5), ("toxic-ambo", "experiment", 1.0), ("prosy-sacs", "experiment", 0.0)
    ]  # fmt: skip
    assert skipped == ["obese-hunt (failed)", "later (queued)"]
    assert rows[1]["metrics"][f"{SOURCE}:test.fusion.ua"] == 0.95
    assert rows[1]["metrics"][f"{TRANSFER}:plain.50.ua"] == pytest.approx(0.75)
    assert rows[1]["baseline"] == "main"
    # a param given with its file resolves the same
    assert parse_exp_show(payload, "params.yaml:fusion.beta")[0][2]["value"] == 0.0


def test_workspace_row_only_when_it_holds_uncommitted_results():
    rows, _ = parse_exp_show(_payload(SWEEP), "fusion.beta")
    assert "workspace" not in {r["kind"] for r in rows}  # clean: same as the baseline
    rows, _ = parse_exp_show(_payload(SWEEP, workspace_beta=0.3, workspace_ua=0.7), "fusion.beta")
    assert rows[0]["kind"] == "workspace" and rows[0]["value"] == 0.3


def test_default_metric_is_the_main_models_ua():
    rows, _ = parse_exp_show(_payload(SWEEP), "fusion.beta")
    assert default_metric(rows) == f"{SOURCE}:test.fusion.ua"  # not fusion_minus_concat_ua / audio
    flat = [{"metrics": {f"{SOURCE}:source/test/audio/ua": 0.6, f"{SOURCE}:source/test/ua": 0.9}}]
    assert default_metric(flat) == f"{SOURCE}:source/test/ua"  # flat names: the least nested
    with pytest.raises(SweepError, match="pass --metric, one of: m:loss"):
        default_metric([{"metrics": {"m:loss": 0.3}}])


def test_metric_names_resolve_or_list_what_exists():
    rows, _ = parse_exp_show(_payload(SWEEP), "fusion.beta")
    assert resolve_metrics(rows, "plain.50.ua") == [f"{TRANSFER}:plain.50.ua"]
    assert resolve_metrics(rows, [f"{SOURCE}:test.audio.ua"]) == [f"{SOURCE}:test.audio.ua"]
    with pytest.raises(
        SweepError, match=r"'test\.fusion\.wa' is not a metric.*metrics/source\.json:test\.fusion\.ua"
    ):
        resolve_metrics(rows, "test.fusion.wa")


def test_write_sweep_sorts_by_value(tmp_path):
    rows, _ = parse_exp_show(_payload(SWEEP), "fusion.beta")
    markdown_path, png_path = write_sweep(rows, "fusion.beta", None, tmp_path / "sweep")
    lines = markdown_path.read_text().splitlines()
    assert lines[0] == f"| experiment | fusion.beta | {SOURCE}:test.fusion.ua |"
    assert lines[2:] == ["| prosy-sacs | 0.0 | 0.8000 |", "| main (baseline) | 0.5 | 0.9000 |",
                         "| toxic-ambo | 1.0 | 0.9500 |"]  # fmt: skip
    assert png_path.name == "sweep.png" and png_path.stat().st_size > 1000
    # a categorical param plots too
    rows, _ = parse_exp_show(_payload(SWEEP), "fusion.mode")
    assert write_sweep(rows, "fusion.mode", ["test.fusion.ua", "plain.50.ua"], tmp_path)[1].stat().st_size > 0


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
        assert {"train", "transfer", "evaluate"} <= ran, ran
        # nothing upstream of train; stages downstream of evaluate (a report) may follow it
        upstream = {s for s in ran if s.split("@")[0] in ("metadata", "extract", "adapt", "baseline")}
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
    metric = default_metric(rows)  # discovered: metric keys are being renamed elsewhere
    assert metric.startswith(f"{SOURCE}:") and metric.endswith("ua")
    assert all(isinstance(r["metrics"][metric], float) for r in rows)

    markdown = sweep.main(["--param", "fusion.beta", "--repo", str(repo), "--out", str(tmp_path / "sweep")])
    lines = markdown.splitlines()
    assert lines[0] == f"| experiment | fusion.beta | {metric} |"
    assert [line.split(" | ")[0].lstrip("| ") for line in lines[2:]] == [
        by_beta[0.0], "main (baseline)", by_beta[1.0]
    ]  # fmt: skip
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
    # nested (test.fusion.ua) or flat (source/test/ua) keys: whichever the metrics file uses
    value = applied.get(key)
    if value is None:
        value = applied
        for part in key.split("."):
            value = value[part]
    assert value == rows[by_beta[1.0]]["metrics"][metric]
    # the applied workspace equals that experiment, so the collector shows no extra row
    assert "workspace" not in {r["kind"] for r in collect("fusion.beta", repo)}
