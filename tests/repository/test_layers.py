"""The layers of lpe/, by package: every module lives in a package, and a package imports only
its own modules and the packages below it (``LAYERS``), so the tree says what may import what.

The library layers, lowest first, then the three entry-point packages: ``stages`` (what the
workflow runs, ``python -m lpe.stages.<name>``), ``reports`` (``python -m lpe.reports.<name>``) and
``tools`` (commands for users). No stage imports another stage, no report imports a stage, and
only the entry-point packages parse arguments. Every import counts, at module level or inside a
function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each package may import the packages on its own line and the lines above it.
LAYERS = [
    {"core"},
    {"formats"},
    {"models"},
    {"data"},
    {"members"},
    {"evaluation"},
    {"training"},
    {"methods"},  # one module per ensemble method, registered into the loop below
    {"cli"},  # the flags the entry points share: above the library, below its users
    {"stages", "reports"},
    {"tools"},
]
ENTRY_POINTS = {"stages", "reports", "tools"}
# the packages that know about command lines: the entry points and their shared flags
COMMAND_LINE = ENTRY_POINTS | {"cli"}
LIBRARY_IN_ENTRY_POINTS = {"lpe.reports.tabulate", "lpe.reports.plotting"}  # shared by reports


def lpe_imports(path: Path) -> set[str]:
    """The lpe modules ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lpe"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("lpe.")}
    return found


def modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(ROOT).with_suffix("").parts): p
        for p in (ROOT / "lpe").rglob("*.py")
        if p.stem != "__init__"
    }


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: lpe_imports(path) & found.keys() for name, path in found.items()}


def package(module: str) -> str:
    return module.split(".")[1]


def layer(pkg: str) -> int:
    return next(i for i, members in enumerate(LAYERS) if pkg in members)


def run_by_workflow() -> set[str]:
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    return set(re.findall(r"python -m (lpe\.\w+\.\w+)", rules))


def test_every_module_lives_in_a_known_package():
    flat = sorted(p.name for p in (ROOT / "lpe").glob("*.py") if p.stem != "__init__")
    assert not flat, f"modules outside the packages: {flat}"
    packages = {p.parent.name for p in (ROOT / "lpe").glob("*/__init__.py")}
    assert packages == set().union(*LAYERS), packages ^ set().union(*LAYERS)


def test_the_workflow_runs_entry_points_that_exist():
    run = run_by_workflow()
    # an entry point is a module, or a package with a __main__ (lpe.reports.claims)
    runnable = modules().keys() | {m.removesuffix(".__main__") for m in modules()}
    assert len(run) >= 20 and run <= runnable, run - runnable
    assert {package(m) for m in run} == {"stages", "reports"}


def test_a_package_imports_only_itself_and_the_layers_below():
    upward = {
        m: sorted(i for i in imported if layer(package(i)) > layer(package(m)))
        for m, imported in import_graph().items()
    }
    upward = {m: i for m, i in upward.items() if i}
    assert not upward, f"imports of a higher layer: {upward}"


def test_entry_points_import_no_other_entry_point():
    """Stages and reports share only library code: no stage imports another stage or a report,
    no report a stage (tools may use the reports' shared tabulate). An entry point that is a
    package (``lpe.reports.claims``) imports its own modules."""
    crossing = {}
    for m, imported in import_graph().items():
        if package(m) in {"stages", "reports"}:
            own = ".".join(m.split(".")[:3]) + "."  # lpe.reports.claims.: the same entry point
            bad = {
                i
                for i in imported - {m}
                if package(i) in {"stages", "reports"}
                and i not in LIBRARY_IN_ENTRY_POINTS
                and not i.startswith(own)
            }
            if bad:
                crossing[m] = sorted(bad)
    assert not crossing, f"entry points importing entry points: {crossing}"


# what knowing about a command line looks like in a module: argparse, a parser's methods, a
# namespace of flags handed around as ``args``
COMMAND_LINE_TEXT = re.compile(
    r"\bargparse\b|ArgumentParser|\.parse_args\(|\.add_argument\(|\bNamespace\b"
    r"|\bdef \w+\([^)]*(?<![*\w])args\b[:,)]|(?<![*\w])args\.\w+"
)
# (mnist1d's own dataset arguments: its API, read and set in lpe.data.datasets)
NOT_OURS = {"lpe.data.datasets": ("args.num_samples", "args.train_split", "args.seed")}


def command_line_uses(module: str, text: str) -> list[str]:
    for allowed in NOT_OURS.get(module, ()):
        text = text.replace(allowed, "")
    return [m.group(0) for m in COMMAND_LINE_TEXT.finditer(text)]


def test_only_entry_points_know_about_command_lines():
    """The library takes values and dataclasses: no library module imports argparse, builds or
    fills a parser, or takes a namespace of flags (``args``); lpe.cli holds the shared flags."""
    found = {
        m: command_line_uses(m, path.read_text())
        for m, path in modules().items()
        if package(m) not in COMMAND_LINE
    }
    found = {m: hits for m, hits in found.items() if hits}
    assert not found, f"library modules that know about command lines: {found}"


def test_the_command_line_check_sees_each_form():
    planted = [
        "import argparse",
        "def member_format(args):",
        "def f(x, args: object) -> None:",
        "p.add_argument('--bits')",
        "n = args.bits",
        "ns: Namespace",
    ]
    assert all(command_line_uses("lpe.members.sets", line) for line in planted)
    assert not command_line_uses("lpe.members.sets", "def f(arguments, kwargs): return kwargs.x")
    assert not command_line_uses("lpe.members.sets", "def forward(self, *args, **kwargs):")


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


def test_the_checks_see_a_crossing(tmp_path):
    """The graph is read from the sources: an upward import, in any spelling, would be found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from lpe.stages import predict\n"
        "def main():\n    from lpe.training.loop import train\n    import lpe.tools.fingerprint\n"
    )
    found = lpe_imports(sample) & modules().keys()
    assert found == {"lpe.stages.predict", "lpe.training.loop", "lpe.tools.fingerprint"}
    assert max(layer(package(m)) for m in found) > layer("training")
