"""``mer.review``: the PR-review Markdown of metrics, params and plots against a revision.

Runs an experiment in a copy of the tiny reproduced repo and checks that the review shows the
param change, a changed metric and PNGs of the changed plots; a fresh copy reviews as unchanged.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from mer.review import ReviewError, _plot_specs, review_markdown
from tests.pipeline_utils import copy_repo, run

SECTION = re.compile(r"^### (\w+)\n\n(.*?)(?=^### |\Z)", re.MULTILINE | re.DOTALL)


def sections(markdown: str) -> dict[str, str]:
    return {name: body.strip() for name, body in SECTION.findall(markdown)}


def table_rows(table: str) -> list[list[str]]:
    """Cells of a Markdown table's body rows (header and separator dropped)."""
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def flat_leaves(tree: dict) -> list:
    return [v for x in tree.values() for v in (flat_leaves(x) if isinstance(x, dict) else [x])]


def is_nonzero_number(cell: str) -> bool:
    try:
        return float(cell) != 0.0
    except ValueError:
        return False


@pytest.mark.slow
def test_review_after_experiment_shows_params_metrics_and_plots(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    run(["dvc", "exp", "run", "-S", "fusion.beta=0.2", "-S", "fusion.beta_learnable=false"], repo)

    markdown = review_markdown("HEAD", repo / "reports/review", repo=repo)
    parts = sections(markdown)
    assert set(parts) == {"Verdicts", "Metrics", "Params", "Plots"}, markdown
    # a verdict per headline metric of the main model, from the paired interval
    verdicts = {(row[0], row[1]): row for row in table_rows(parts["Verdicts"])}
    for metric in ("UA", "WA", "weighted F1"):
        row = verdicts[("fusion", metric)]
        # 12 test utterances: a changed beta may leave every predicted class as it was
        assert row[-1] in {"better", "worse", "within noise", "unchanged (identical predictions)"}, row
        low, high = (float(x) for x in row[5].strip("[]").split(","))
        assert low <= float(row[4]) <= high
        assert (row[-1] in {"better", "worse"}) == (not low <= 0 <= high)
    assert verdicts[("concat", "UA")][-1] == "unchanged (identical predictions)"  # not re-trained

    # point 6: the declared metrics hold <= 150 numeric leaves and no strings; the diff <= 150 rows
    declared = [
        m
        for s in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values()
        for entry in s.get("metrics", [])
        for m in (entry if isinstance(entry, dict) else [entry])
    ]
    leaves = [v for path in declared for v in flat_leaves(json.loads((repo / path).read_text()))]
    assert all(isinstance(v, (int, float)) for v in leaves) and len(leaves) <= 150, len(leaves)
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo))
    assert 0 < sum(len(rows) for rows in diff.values()) <= 150
    short = run(["git", "rev-parse", "--short", "HEAD"], repo).strip()
    assert markdown.startswith("## ") and "`HEAD`" in markdown.splitlines()[0]
    assert short in markdown.splitlines()[0] and "workspace" in markdown.splitlines()[0]

    params = {row[1]: row[2:] for row in table_rows(parts["Params"])}
    assert params["fusion.beta"] == ["0.5", "0.2"], parts["Params"]

    metric_rows = table_rows(parts["Metrics"])
    changed = [row for row in metric_rows if row[0] in {"metrics/source.json", "metrics/transfer.json"}]
    # a numeric metric moved (Change column), not only provenance strings
    assert any(is_nonzero_number(row[-1]) for row in changed), parts["Metrics"]
    # the metrics files hold numbers only: provenance lives in results/provenance.json
    assert not any("provenance" in row[1] for row in metric_rows)

    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", parts["Plots"])
    assert links, parts["Plots"]
    for link in links:
        assert not link.startswith("/"), link  # relative to the repo root
        png = repo / link
        assert png.is_file() and png.stat().st_size > 1000, link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the main model's curves (a dvclive run named in dvc.yaml's plots) changed with beta
    assert "`dvclive/fusion/main/seed0/plots/metrics/" in parts["Plots"], parts["Plots"]

    # the command line prints the same review (PNGs are rewritten in place)
    cli = run([sys.executable, "-m", "mer.review", "--rev", "HEAD", "--out", "reports/review"], repo)
    assert "fusion.beta" in cli and set(re.findall(r"\(([^)]+\.png)\)", cli)) == set(links)


@pytest.mark.slow
def test_review_without_changes_says_so_and_draws_nothing(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    markdown = review_markdown("HEAD", repo / "reports/review", repo=repo)
    parts = sections(markdown)
    assert all(row[-1] == "unchanged (identical predictions)" for row in table_rows(parts.pop("Verdicts")))
    assert parts == {
        "Metrics": "No metric changed against `HEAD`.",
        "Params": "No param changed against `HEAD`.",
        "Plots": "No plot data changed against `HEAD`.",
    }, markdown
    assert not list(repo.rglob("reports/**/*.png"))


@pytest.mark.slow
def test_unknown_rev_and_non_repo_fail_clearly(reproduced_repo, tmp_path):
    with pytest.raises(ReviewError, match=r"unknown revision 'no-such-branch'"):
        review_markdown("no-such-branch", tmp_path / "out", repo=reproduced_repo)
    with pytest.raises(ReviewError, match="not a git repository"):
        review_markdown("main", tmp_path / "out", repo=tmp_path)
    cli = subprocess.run(
        [sys.executable, "-m", "mer.review", "--rev", "no-such-branch"],
        cwd=reproduced_repo,
        capture_output=True,
        text=True,
    )
    assert cli.returncode != 0 and "no-such-branch" in cli.stderr and not cli.stdout


def test_plot_specs_read_files_columns_and_templates():
    dvc_yaml = """
plots:
  - plots/confusion.csv: {template: confusion, x: actual, y: predicted}
  - Few-shot: {x: fraction, y: {plots/fewshot.csv: [plain_ua, adapter_ua]}}
  - Dev UA: {x: step, y: {dvclive/fusion/plots/metrics/dev/ua.tsv: ua}}
  - plots/png/
"""
    specs = _plot_specs(dvc_yaml)
    assert specs["plots/png/"] == "plots/png/"
    assert specs["plots/confusion.csv"].confusion and specs["plots/confusion.csv"].y == ["predicted"]
    assert specs["plots/fewshot.csv"].x == "fraction"
    assert specs["plots/fewshot.csv"].y == ["plain_ua", "adapter_ua"]
    assert specs["dvclive/fusion/plots/metrics/dev/ua.tsv"].y == ["ua"]
    assert "Few-shot" not in specs
