"""The package's shape, kept as the restructure (#15) left it: stages import only earlier stages,
no module reaches into another package's private names, no module grows past 600 lines, and
``import maskprep`` stays light. Each rule has a negative control on a planted violation."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "maskprep"
#: The data flow, earliest first: a stage may import the ones before it, never one after.
STAGES = ("sources", "tokenizing", "shaping", "output", "pipeline", "distributed")
#: Built on top of the stages; no stage may import them.
ON_TOP = ("reading", "inspecting", "verifying", "collate", "cli")
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, source: str) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) for every import in ``source``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
    return found


def _top(module: str) -> str:
    """The package a ``maskprep.x.y`` module belongs to (``x``), or ``""`` for ``maskprep``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layout_violations(path: Path, source: str) -> list[str]:
    """What in one module breaks the layout rules, one line each."""
    problems = []
    where = f"{path.relative_to(PACKAGE.parent)}"
    lines = source.count("\n") + 1
    if lines > MAX_LINES:
        problems.append(f"{where}: {lines} lines (at most {MAX_LINES})")
    home = _top(_module_name(path))
    for line, target, names in _imports(path, source):
        if not target.startswith("maskprep") or target == "maskprep._version":
            continue
        other = _top(target)
        if home in STAGES and other in STAGES and STAGES.index(other) > STAGES.index(home):
            problems.append(f"{where}:{line}: stage {home} imports the later stage {other}")
        if home in STAGES and other in ON_TOP:
            problems.append(f"{where}:{line}: stage {home} imports {other}, built on top of it")
        if other and other != home:
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [p for p in target.split(".")[2:] if p.startswith("_")]
            if private:
                problems.append(f"{where}:{line}: private {private} of {target} used from {home}")
    return problems


def test_every_module_keeps_the_layout() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        problems += layout_violations(path, path.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_there_are_stage_subpackages() -> None:
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file() or (PACKAGE / f"{stage}.py").is_file()
    assert sum((PACKAGE / stage).is_dir() for stage in STAGES) >= 3


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("sources/x.py", "from ..output.writer import ShardWriter\n", "later stage output"),
        ("shaping/x.py", "from maskprep.inspecting import stats\n", "built on top"),
        ("output/x.py", "from ..reading.shards import open_input\n", "built on top"),
        ("cli/x.py", "from ..output.session import _publish\n", "private ['_publish']"),
        ("cli/x.py", "from maskprep.output import _layout\n", "private ['_layout']"),
        ("output/x.py", "x = 1\n" * (MAX_LINES + 1), "lines (at most"),
    ],
)
def test_a_planted_violation_is_seen(module, source, expected) -> None:
    problems = layout_violations(PACKAGE / module, source)
    assert any(expected in problem for problem in problems), problems


def test_allowed_imports_are_not_violations() -> None:
    source = "from ..sources import records\nfrom maskprep._version import __version__\n"
    assert layout_violations(PACKAGE / "output" / "x.py", source) == []


def test_import_maskprep_loads_no_heavy_dependency() -> None:
    probe = (
        "import sys, maskprep\n"
        "heavy = [m for m in ('pyarrow', 'numpy', 'torch', 'transformers', 'datasets', 'ray')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
