"""The house's shape, checked: the import graph of synpo/ has no cycle and respects the layers of
docs/ARCHITECTURE.md (run.py -> pipeline -> methods -> stage toolkit -> components -> run directory), and no file or
function outgrows the limits that keep it readable. Imports are read with ``ast``, including those inside functions.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "synpo"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# The loop and the config assembly may import anything; methods may import anything below the loop.
LOOP = {"synpo.pipeline", "synpo.config", "synpo.sweep", "synpo.plan"}
# The report sits above the loop: it reads finished runs, and their saved configs through the loop's schema
# (``synpo.config.speed_keys``). Nothing else imports it.
REPORT = {"synpo.report", "synpo.sources", "synpo.tables"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """The synpo modules that ``path`` imports (``from synpo.x import y`` counts as synpo.x.y when y is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("synpo")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("synpo"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _is_method(name: str) -> bool:
    return name == "synpo.methods" or name.startswith("synpo.methods.")


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(n) :] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_nothing_below_the_loop_imports_the_loop_or_the_methods():
    bad = []
    for m, deps in GRAPH.items():
        if m in LOOP | REPORT:
            continue
        for d in deps:
            if d in LOOP | REPORT or (_is_method(d) and not _is_method(m)):
                bad.append(f"{m} imports {d}")
    assert bad == []


def test_the_stage_toolkit_sits_below_methods_and_evaluation():
    assert not {d for d in GRAPH["synpo.stages"] if d.startswith(("synpo.evaluation", "synpo.methods"))}
    lower = ("synpo.artifacts", "synpo.errors", "synpo.memory", "synpo.schema")
    for m in lower:
        assert {d for d in GRAPH[m] if d not in lower} == set(), m


def test_sizes():
    long_files, long_functions = [], []
    for name, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {n} lines")
    assert long_files == [] and long_functions == []


def test_no_reference_to_a_document_outside_the_repository():
    """The code cites docs/ARCHITECTURE.md, which the project keeps, never a design file it does not ship."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in [*PACKAGE.rglob("*.py"), *(ROOT / "conf").rglob("*.yaml"), *(ROOT / "tests").glob("*.py")]
        if "DESIGN section" in p.read_text() and p.name != "test_architecture.py"
    ]
    assert offenders == []
    assert (ROOT / "docs" / "ARCHITECTURE.md").is_file()


# The tiny world's room: only the registry entries that name it may import it (the world's provider is imported by
# synpo.worlds through its PROVIDERS table; the verifier scorer and the tiny harness's lm-eval tasks are the world's
# own components), and no code outside compares a config value with the world's name.
WORLD_ENTRIES = {"synpo.scoring.verifier", "synpo.evaluation.harness"}


def _in_world(name: str) -> bool:
    return name == "synpo.tinyworld" or name.startswith("synpo.tinyworld.")


def test_only_the_worlds_entries_import_it():
    bad = [f"{m} imports {d}" for m, deps in GRAPH.items() for d in deps if _in_world(d) and not _in_world(m)]
    assert sorted(set(bad) - {f"{m} imports {d}" for m in WORLD_ENTRIES for d in GRAPH[m]}) == []


def test_no_generic_code_compares_a_value_with_the_worlds_name():
    offenders = []
    for name, path in MODULES.items():
        if _in_world(name) or name == "synpo.worlds":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
                values += [e for v in values if isinstance(v, (ast.Tuple, ast.List, ast.Set)) for e in v.elts]
                if any(isinstance(v, ast.Constant) and v.value == "tinyworld" for v in values):
                    offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_stages_read_the_runs_settings_not_the_whole_config():
    """Methods, evaluation groups and the stage toolkit see ``Context.run`` (``RunSettings``: the blocks they may
    read), never the whole config: how a run is logged, where it lives and Hydra's own keys stay with the loop."""
    from dataclasses import fields

    from synpo.config import SynpoConfig
    from synpo.stages import RunSettings

    below = [p for n, p in MODULES.items() if _is_method(n) or n.startswith("synpo.evaluation") or n == "synpo.stages"]
    reach = [
        f"{p.relative_to(ROOT)}:{node.lineno}"
        for p in below
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "cfg"
    ]
    assert not reach, f"the whole config reached below the loop at {reach}"
    served = {f.name for f in fields(RunSettings)}
    assert served <= {f.name for f in fields(SynpoConfig)}
    assert not served & {"logger", "run_dir", "hydra"}
