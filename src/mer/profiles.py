"""Params profiles: the seeds' real experiments as named sets of ``params.yaml`` overrides.

A profile (``profiles/<name>.yaml``) holds only the keys it changes. Run one as a DVC experiment,
with the corpus roots where your copies are::

    python -m mer.profiles show seed000_iemocap_loso          # the -S overrides it stands for
    python -m mer.profiles run seed000_iemocap_loso -S corpora.iemocap.root=/data/IEMOCAP_full_release

``run`` calls ``dvc exp run -n <name> -S key=value ...`` (extra arguments are passed on), so
extraction is shared with every other experiment on the same corpus and encoders.

>>> overrides({"corpora": {"source": "iemocap", "folds": [1, 2]}, "fusion": {"beta": 0.3}})
['corpora.source=iemocap', 'corpora.folds=[1, 2]', 'fusion.beta=0.3']
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from mer.params import ParamsError, validate_all

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"


def profile_path(name: str) -> Path:
    """``profiles/<name>.yaml`` (or ``name`` itself if it is a file); a ValueError lists the known."""
    path = Path(name)
    if path.is_file():
        return path
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ValueError(f"no profile {name!r} in {PROFILES_DIR}; known: {known}")
    return path


def load_profile(name: str) -> dict:
    return yaml.safe_load(profile_path(name).read_text()) or {}


def merge(params: dict, profile: dict) -> dict:
    """A copy of ``params`` with the profile's leaves set (nested sections merged, lists replaced)."""
    merged = copy.deepcopy(params)
    for key, value in profile.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def overrides(profile: dict, prefix: str = "") -> list[str]:
    """``key.path=value`` strings for ``dvc exp run -S`` (values in YAML flow style)."""
    out = []
    for key, value in profile.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += overrides(value, f"{name}.")
        else:
            out.append(
                f"{name}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            )
    return out


def validate_profile(name: str, params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """Validate ``params.yaml`` with the profile applied (every key typed and range-checked).

    Raises:
        ParamsError: naming the profile and the bad key.
    """
    merged = merge(yaml.safe_load(Path(params_path).read_text()), load_profile(name))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(merged, sort_keys=False))
        try:
            return validate_all(path)
        except ParamsError as exc:
            raise ParamsError(f"profile {name}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Show or run a params profile (profiles/*.yaml).")
    parser.add_argument("action", choices=("show", "run", "list"))
    parser.add_argument("name", nargs="?")
    args, extra = parser.parse_known_args(argv)
    if args.action == "list":
        for path in sorted(PROFILES_DIR.glob("*.yaml")):
            print(path.stem)
        return 0
    if not args.name:
        parser.error("name a profile (python -m mer.profiles list)")
    validate_profile(args.name)
    sets = [arg for item in overrides(load_profile(args.name)) for arg in ("-S", item)]
    if args.action == "show":
        print("\n".join(sets[1::2]))
        return 0
    command = ["dvc", "exp", "run", "-n", Path(args.name).stem, *sets, *extra]
    print(" ".join(command), flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
