"""#14, portability: the Pythons ``requires-python`` claims run the torch-free path, CI checks
the oldest and newest of them, and the transformers floor is one that is tested."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.integration

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the suite itself runs on 3.11+
    tomllib = pytest.importorskip("tomli")

SCRIPT = ROOT / ".ci" / "portable"


def _pyenv_has(version: str) -> bool:
    if shutil.which("pyenv") is None:
        return False
    found = subprocess.run(["pyenv", "latest", version], capture_output=True, check=False)
    return found.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("version", "constraints"), [("3.10", ".ci/floors.txt"), ("3.13", None)], ids=["3.10", "3.13"]
)
def test_build_inspect_merge_on_the_claimed_pythons(version, constraints):
    """.ci/portable: pip install . in a fresh venv without torch (minutes, most of it pip)."""
    if not _pyenv_has(version):
        pytest.skip(f"Python {version} is not installed with pyenv here")
    completed = subprocess.run(
        ["bash", str(SCRIPT), version, *([constraints] if constraints else [])],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    assert f"Python {version}: build, cached build, inspect" in completed.stdout


def _requirement_floor(name: str) -> tuple[int, ...] | None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        match = re.match(rf"^{name}\s*>=\s*([0-9.]+)", requirement)
        if match:
            return tuple(int(p) for p in match.group(1).split("."))
    return None


def _ci_text() -> str:
    files = [ROOT / ".ci" / "run", *sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))]
    return "\n".join(f.read_text() for f in files if f.is_file())


def test_ci_runs_the_oldest_and_newest_claimed_python():
    ci = _ci_text()
    minimum = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    oldest = re.search(r"(\d+\.\d+)", minimum).group(1)
    assert f"portable {oldest} " in ci, "CI never runs the oldest Python"
    assert re.search(r"portable 3\.1[3-9]", ci), "CI never runs the newest Python"


def test_transformers_floor_is_tested_or_pinned_to_what_is_tested():
    floor = _requirement_floor("transformers")
    assert floor is not None
    floor_text = ".".join(map(str, floor))
    tested_in_ci = re.search(rf"transformers[=~]=+{re.escape(floor_text)}", _ci_text())
    assert floor >= (5,) or tested_in_ci, f"transformers>={floor_text} is claimed, never tested"


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503)."""
    return re.sub(
        r"[-_.]+", "-", re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0)
    ).lower()


def _version(text: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (3 - len(parts))


def test_every_dependency_floor_is_what_the_floor_lane_installs():
    """pyproject's floors are the pins of .ci/floors.txt, one for one: a floor no CI lane
    installs is a claim nothing tests."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    claimed = {}
    for requirement in project["dependencies"]:
        floor = re.search(r">=\s*([0-9.]+)", requirement)
        assert floor, f"{requirement}: every dependency names its floor"
        claimed[_name(requirement)] = _version(floor.group(1))
    pinned = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pinned[_name(name)] = _version(version.strip())
    assert claimed == pinned


def test_every_package_the_code_imports_is_declared():
    """Each third-party package maskprep imports (at the top or inside a function) is one of its
    dependencies or extras: one that only arrives through another package's requirements can
    leave with that package's next release."""
    import ast
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        declared |= {_name(r) for r in requirements}
    distributions = packages_distributions()
    imported = {}
    for path in sorted((ROOT / "maskprep").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "maskprep" and top not in sys.stdlib_module_names:
                    imported.setdefault(top, path.relative_to(ROOT).as_posix())
    undeclared = {
        top: where
        for top, where in imported.items()
        if not {_name(d) for d in distributions.get(top, [top])} & declared
    }
    assert undeclared == {}
