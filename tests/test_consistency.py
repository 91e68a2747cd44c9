"""dvc.yaml, params.yaml and the code agree (SpeechBrain-style consistency checks).

- every param key a stage declares exists in params.yaml, and its section is one the stage's
  script loads; the script loads no section the stage does not declare;
- every ``src/mer`` module a stage's script imports (transitively) is a declared dependency, so
  ``dvc repro`` re-runs the stage when its code changes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from mer.models.config import FusionConfig

REPO = Path(__file__).resolve().parents[1]
# Modules whose edits cannot change a stage's outputs (logging, package markers).
NOT_DEPS = {"src/mer/__init__.py", "src/mer/logs.py", "src/mer/models/__init__.py",
            "src/mer/corpora/__init__.py"}  # fmt: skip


def _stages() -> dict[str, dict]:
    """dvc.yaml stages with foreach expanded to their first item (enough for the checks)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    expanded = {}
    for name, stage in stages.items():
        if "matrix" in stage:
            body = {k: v for k, v in stage.items() if k != "matrix"}
            first = {}
            for key, values in stage["matrix"].items():
                if isinstance(values, str):  # ${section.key}
                    section, entry = values.strip("${}").split(".")
                    values = params[section][entry]
                first[key] = values[0]
            text = yaml.safe_dump(body)
            for key, value in first.items():
                text = text.replace("${item." + key + "}", str(value))
            expanded[f"{name}@" + "-".join(map(str, first.values()))] = yaml.safe_load(text)
            continue
        if "foreach" not in stage:
            expanded[name] = stage
            continue
        items = stage["foreach"]
        if isinstance(items, str):  # ${section.key}
            section, key = items.strip("${}").split(".")
            items = params[section][key]
        # an empty list (corpora.folds by default) still gets its body checked, with a stand-in item
        for i, item in enumerate(items or ["1"]):
            text = yaml.safe_dump(stage["do"])
            if isinstance(item, dict):
                for key, value in item.items():
                    text = text.replace("${item." + key + "}", str(value))
            else:
                text = text.replace("${item}", str(item))
            expanded[f"{name}@{i}"] = yaml.safe_load(text)
    return expanded


def _module_path(module: str) -> Path | None:
    base = REPO / "src" / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[Path]:
    """``mer`` modules imported by ``path``, transitively (package __init__ files included)."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        for name in names:
            if not name.startswith("mer"):
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
                module = _module_path(".".join(parts[:i]))
                if module and module not in seen:
                    seen.add(module)
                    todo.append(module)
    return seen


STAGES = _stages()


def _script(stage: dict) -> Path:
    match = re.search(r"python (stages/\w+\.py)", stage["cmd"])
    assert match, f"stage cmd does not run a stages/ script: {stage['cmd']}"
    return REPO / match.group(1)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_declared_params_exist_and_are_read(name):
    stage = STAGES[name]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    declared = set()
    for key in stage.get("params", []):
        section, *rest = key.split(".")
        assert section in params, f"{name}: params section {section!r} not in params.yaml"
        if rest:
            assert rest[0] in params[section], f"{name}: {key} not in params.yaml"
        declared.add(section)
    text = _script(stage).read_text()
    loaded = set(re.findall(r'load_section\("(\w+)"\)', text))
    if re.search(r"load_recipes?\(", text):  # params.yaml's recipes section
        loaded.add("recipes")
    if "load_model_config(" in text:  # model + fusion, or model + one recipe
        loaded |= {"model", "fusion", "recipes"}
    every = re.search(r'load_section\(name\)\) for name in SECTIONS(?: if name != "(\w+)")?', text)
    if every:  # loads every section (but the one it names)
        loaded |= set(yaml.safe_load((REPO / "params.yaml").read_text())) - {every.group(1)}
    assert declared <= loaded, f"{name}: declares {declared - loaded} but its script never loads them"
    # stages/train.py reads `fusion` for the main model and one recipe with --recipe
    optional = {"fusion", "recipes"} if "stages/train.py" in stage["cmd"] else set()
    if "--recipe" in stage["cmd"]:  # its own recipe only: editing one recipe re-runs its stages alone
        recipe = re.search(r"--recipe (\S+)", stage["cmd"]).group(1)
        assert f"recipes.{recipe}" in stage["params"], f"{name}: does not depend on recipes.{recipe}"
        assert "recipes" not in stage["params"] and "fusion" not in stage["params"], name
    if "stages/extract.py" in stage["cmd"]:  # adapt.swap decides the swap extractor's run only
        swap = "--section audio_swap" in stage["cmd"]
        assert ("adapt.swap" in stage["params"]) == swap, f"{name}: adapt.swap declared iff the swap stage"
        optional |= set() if swap else {"adapt"}
    assert loaded - optional <= declared, f"{name}: loads {loaded - declared} without declaring them"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_imported_code_is_a_declared_dependency(name):
    stage = STAGES[name]
    script = _script(stage)
    deps = set(stage.get("deps", []))
    assert str(script.relative_to(REPO)) in deps, f"{name}: its script is not a dependency"
    needed = {str(p.relative_to(REPO)) for p in _imports(script)} - NOT_DEPS
    missing = needed - deps
    assert not missing, f"{name}: imports {sorted(missing)} but does not list them in deps"
    unused = {d for d in deps if d.startswith("src/")} - needed
    assert not unused, f"{name}: lists {sorted(unused)} as deps but never imports them"


def test_metadata_stage_declares_exactly_what_its_support_check_reads():
    """The metadata stage checks that the corpora support the run's models (mer.recipes): it
    re-runs when a field FusionConfig.needs reads changes, and not on any other model field."""
    declared = set(STAGES["metadata"]["params"])
    section = {
        **dict.fromkeys(FusionConfig.MODEL_KEYS, "model"),
        **dict.fromkeys(FusionConfig.FUSION_KEYS, "fusion"),
    }
    needs = {f"{section[key]}.{key}" for key in FusionConfig.NEEDS_KEYS}
    assert {k for k in declared if k.split(".")[0] in ("model", "fusion")} == needs
    assert {"recipes", "train.baselines", "train.strict_recipes", "ablation.variants"} <= declared
    # which corpus needs its media: the extract specs, per role (the target's overrides too)
    assert {"extract.text.model", "extract.audio.model", "extract.video.model", "extract.target"} <= declared


def test_metrics_and_plots_are_committed_not_cached():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        stage = stage.get("do", stage)
        for entry in stage.get("metrics", []):
            ((path, options),) = entry.items()
            assert options == {"cache": False}, f"{path} must be cache: false so git versions it"


# --- one obvious place for everything: stage -> script -> module, no cycles ---------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO / "src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _direct_imports(path: Path) -> set[str]:
    """``mer`` modules ``path`` imports anywhere in it (function-local imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        names |= {name for name in candidates if name.startswith("mer") and _module_path(name)}
    return names


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_library_module_is_named_after_its_script(name):
    """dvc.yaml names the stage, the stage names the script, the script's name is the module's."""
    script = _script(STAGES[name])
    module = f"mer.{script.stem}"
    assert _module_path(module), f"{name}: runs {script.name} but src/mer/{script.stem}(.py|/) does not exist"
    tree = ast.parse(script.read_text())
    calls = {alias.asname or alias.name
             for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == module
             for alias in node.names}  # fmt: skip
    assert calls, f"{name}: {script.name} does not import from {module}"
    assert tree.body and isinstance(tree.body[0], ast.Expr), f"{script.name}: no docstring"
    for node in ast.walk(tree):  # the script calls its library with keyword arguments only
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in calls:
            assert not node.args, f"{script.name}: {node.func.id}(...) takes positional arguments"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports) as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                return [*path, module, dep]
            if dep not in state and (cycle := visit(dep, [*path, module])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [])):
            return cycle
    return None


def test_no_import_cycles_in_src():
    graph = {_module_name(p): _direct_imports(p) for p in (REPO / "src" / "mer").rglob("*.py")}
    # importing mer.a.b runs mer/a/__init__: a package depends on nothing by that alone
    graph = {m: {d for d in deps if d != m and not m.startswith(d + ".")} for m, deps in graph.items()}
    assert len(graph) > 40 and graph["mer.train"] >= {"mer.models.fusion", "mer.data"}  # the graph is real
    cycle = _find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_cycle_check_finds_a_cycle():
    graph = {"mer.a": {"mer.b"}, "mer.b": {"mer.c"}, "mer.c": {"mer.a"}, "mer.d": {"mer.a"}}
    assert _find_cycle(graph) == ["mer.a", "mer.b", "mer.c", "mer.a"]
    assert _find_cycle({"mer.a": {"mer.b"}, "mer.b": set()}) is None


def test_models_never_import_params():
    for path in (REPO / "src" / "mer" / "models").rglob("*.py"):
        imported = _direct_imports(path)
        assert "mer.params" not in imported, f"{path.name} imports mer.params: use mer.vocab / the config"


def test_every_stage_script_reports_errors_in_one_line():
    """Each stage script runs its main through mer.logs.run_stage (see tests/test_errors.py)."""
    for script in sorted((REPO / "stages").glob("*.py")):
        text = script.read_text()
        entry = 'if __name__ == "__main__":\n    run_stage(main)'
        assert entry in text, f"{script.name}: main() is not run by run_stage"
