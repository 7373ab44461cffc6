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
