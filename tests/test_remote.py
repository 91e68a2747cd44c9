"""Shared cache (issue 8): `dvc push` to a remote, a fresh `git clone`, `dvc pull`, nothing re-runs.

The remote is a local directory (the same commands work for ``s3://`` or ``ssh://`` remotes).
Stage commands in the clone run under a ``python`` that records the call and fails, so the
test shows that the clone's ``dvc repro`` starts no stage command, not only that it says so.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from tests.pipeline_utils import BIN, copy_repo, ran_stages, run

FEATURES = [f"data/features/{c}/{m}" for c in ("source", "target") for m in ("text", "audio", "video")]


def trapped_repro(clone: Path, trap: Path, *args: str) -> tuple[str, float]:
    """`dvc repro` in ``clone`` with a ``python`` on PATH that writes ``trap/called`` and fails."""
    trap.mkdir(exist_ok=True)
    fake = trap / "python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{trap / "called"}"\nexit 3\n')
    fake.chmod(0o755)
    path = os.pathsep.join([str(trap), str(BIN), os.environ["PATH"]])
    start = time.perf_counter()
    output = run(["env", f"PATH={path}", str(BIN / "dvc"), "repro", *args], clone, check=False)
    return output, time.perf_counter() - start


@pytest.mark.slow
def test_push_clone_pull_reruns_nothing(reproduced_repo, tmp_path):
    origin = copy_repo(reproduced_repo, tmp_path / "origin")
    remote = (tmp_path / "remote").resolve()
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], origin)
    config = (origin / ".dvc/config").read_text()
    assert f"url = {remote}" in config, config  # absolute, so it means the same in every clone
    run(["git", "add", ".dvc/config"], origin)
    run(["git", "commit", "-qm", "shared remote"], origin)

    # persist: true (extract) outs are cached like any other out, so push must carry them
    lock = yaml.safe_load((origin / "dvc.lock").read_text())["stages"]
    extract_outs = {
        out["path"]: out for name, s in lock.items() if name.startswith("extract@") for out in s["outs"]
    }
    assert set(extract_outs) == set(FEATURES) and all("md5" in out for out in extract_outs.values())
    output = run(["dvc", "push"], origin)
    pushed = [p for p in remote.rglob("*") if p.is_file()]
    assert pushed, output
    assert "Cache and remote 'shared' are in sync" in run(["dvc", "status", "--cloud"], origin)
    for path, out in extract_outs.items():  # each feature directory's manifest is on the remote
        digest = out["md5"].removesuffix(".dir")
        assert (remote / "files/md5" / digest[:2] / f"{digest[2:]}.dir").is_file(), path

    # a fresh clone has the code, dvc.lock and the remote, but no DVC cache and no outputs
    unpulled = tmp_path / "unpulled"
    run(["git", "clone", "-q", str(origin), str(unpulled)], tmp_path)
    assert not (unpulled / ".dvc/cache").exists() and not (unpulled / "data/features").exists()
    status = run(["dvc", "status"], unpulled)
    assert "changed outs" in status and "deleted:" in status and "data/features/source/text" in status, status
    output, _ = trapped_repro(unpulled, tmp_path / "trap-unpulled")
    assert "metadata" in ran_stages(output), output[-3000:]
    assert (tmp_path / "trap-unpulled/called").exists(), output[-3000:]  # the trap catches stage commands

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    assert not (clone / "data/features").exists()
    run(["dvc", "pull"], clone)
    for feature in FEATURES:
        assert (clone / feature / "meta.json").is_file() and (clone / feature / "verify.json").is_file(), (
            feature
        )
        assert (clone / feature / "meta.json").read_bytes() == (origin / feature / "meta.json").read_bytes()
    model = "models/fusion/main/seed0.safetensors"
    assert (clone / model).read_bytes() == (origin / model).read_bytes()
    assert (clone / "data/metadata/source.parquet").is_file() and (clone / "models/adapters").is_dir()
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone)

    output, seconds = trapped_repro(clone, tmp_path / "trap-clone")
    assert ran_stages(output) == set(), output[-3000:]
    assert not (tmp_path / "trap-clone/called").exists(), output[-3000:]
    assert "Data and pipelines are up to date" in output, output[-3000:]
    assert seconds < 60, f"no-op repro took {seconds:.1f} s"
    assert run(["git", "status", "--porcelain"], clone) == ""
