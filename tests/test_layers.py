"""The import graph of lpe/: no stage imports another stage, and no module imports itself back.

A stage is a module the workflow runs (``python -m lpe.<stage>`` in workflow/rules); what stages
share lives in library modules (lpe.prediction, lpe.member_sets, lpe.datasets, lpe.training,
lpe.finetuning, lpe.tabulate, lpe.plotting, ...). Every import counts, at module level or inside a
function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lpe_imports(path: Path) -> set[str]:
    """The lpe modules ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lpe"):
            if node.module == "lpe":
                found |= {f"lpe.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("lpe.")}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {f"lpe.{p.stem}": p for p in (ROOT / "lpe").glob("*.py") if p.stem != "__init__"}
    return {name: lpe_imports(path) & modules.keys() for name, path in modules.items()}


def stages() -> set[str]:
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    return {f"lpe.{m}" for m in re.findall(r"python -m lpe\.(\w+)", rules)}


def test_the_workflow_runs_stages_that_exist():
    graph = import_graph()
    assert len(stages()) >= 20 and stages() <= graph.keys()


def test_no_stage_imports_another_stage():
    graph, run = import_graph(), stages()
    crossing = {m: sorted(graph[m] & run - {m}) for m in sorted(run) if graph[m] & run - {m}}
    assert not crossing, f"stages importing stages (move what they share to a library): {crossing}"


def test_no_library_imports_a_stage():
    graph, run = import_graph(), stages()
    upward = {m: sorted(graph[m] & run) for m in sorted(graph.keys() - run) if graph[m] & run}
    assert not upward, f"library modules importing stages: {upward}"


def test_the_import_graph_has_no_cycle():
    graph, done, cycles = import_graph(), set(), []

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in done:
                visit(imported, [*path, imported])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_see_a_crossing(tmp_path, monkeypatch):
    """The graph is read from the sources: a stage importing a stage would be found."""
    sample = tmp_path / "sample.py"
    sample.write_text("def main():\n    from lpe.predict import main as other\n")
    assert lpe_imports(sample) == {"lpe.predict"}
