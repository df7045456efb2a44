"""The package's shape: layers that import bottom-up, no import cycle, files by job, prediction without Lightning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "datamodules", "benchmarks")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, modules: set[str]) -> set[str]:
    """Every project module ``path`` imports, at any depth (function-level imports included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``from zoo.x import name`` -> zoo.x
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): project_imports(p, modules) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_correctly():
    graph = import_graph()
    assert "datamodules.primitives.audio" in graph["zoo.predict"] and "zoo.registry" in graph["zoo.models.cnn"]
    assert "datamodules.primitives.audio_files" in graph["datamodules.folder"]
    assert "zoo.factory" in graph["zoo.cli.models"]  # a function-level ``from ..factory import ...``
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_violations({"datamodules.x": {"zoo.y"}, "zoo.y": {"benchmarks.z"}, "zoo.cli.b": {"benchmarks.z"}}) == [
        "datamodules.x imports zoo.y (datamodules/ never imports zoo/)",
        "zoo.y imports benchmarks.z (only zoo.cli reaches benchmarks/)",
    ]


def test_no_import_cycle_anywhere():
    assert cycles(import_graph()) == []


PRIMITIVES = "datamodules.primitives"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports against the layers, bottom-up: primitives (nothing of the project) < datamodules (never
    zoo) < zoo (benchmarks only from its command line, zoo.cli) < benchmarks."""
    bad = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if module.startswith(PRIMITIVES) and not target.startswith(PRIMITIVES):
                bad.append(f"{module} imports {target} (the primitives import nothing of the project)")
            elif module.startswith("datamodules") and target.startswith("zoo"):
                bad.append(f"{module} imports {target} (datamodules/ never imports zoo/)")
            elif module.startswith("zoo") and not module.startswith("zoo.cli") and target.startswith("benchmarks"):
                bad.append(f"{module} imports {target} (only zoo.cli reaches benchmarks/)")
    return bad


def test_layers_import_bottom_up():
    assert layer_violations(import_graph()) == []


def test_the_primitives_do_not_import_lightning():
    code = ("import sys, datamodules.primitives.audio, datamodules.primitives.chunks, datamodules.primitives.files; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('lightning', 'zoo', 'benchmarks')], sorted(sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr


MAX_MODULE_LINES = 400


def test_no_module_does_several_jobs():
    """A module over 400 lines has been doing more than one job; split it by job."""
    sizes = {p.relative_to(REPO): len(p.read_text().splitlines()) for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    assert {str(p): n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_registry_is_a_leaf():
    """It knows names; building (factory), weights (hub, pretrained) and models are elsewhere."""
    assert import_graph()["zoo.registry"] <= {"zoo.frontends"}


def test_prediction_does_not_import_lightning():
    code = "import sys, zoo; zoo.predict_files; zoo.from_pretrained; assert 'lightning' not in sys.modules, sorted(m for m in sys.modules if 'lightning' in m)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
