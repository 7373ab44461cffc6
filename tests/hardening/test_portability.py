"""#14, portability: the Pythons ``requires-python`` claims run the torch-free path, CI checks
the oldest and newest of them, and the transformers floor is one that is tested."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from .helpers import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the suite itself runs on 3.11+
    tomllib = pytest.importorskip("tomli")

SCRIPT = ROOT / "scripts" / "check_old_python.sh"


def _pyenv_has(version: str) -> bool:
    if shutil.which("pyenv") is None:
        return False
    found = subprocess.run(["pyenv", "latest", version], capture_output=True, check=False)
    return found.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "version",
    [
        pytest.param(
            "3.10",
            marks=pytest.mark.xfail(
                strict=True, reason="#14: hashlib.file_digest (3.11+) breaks every build on 3.10"
            ),
        ),
        "3.13",
    ],
)
def test_build_inspect_merge_on_the_claimed_pythons(version, tmp_path):
    """scripts/check_old_python.sh in a fresh venv without torch (~40 s the first time)."""
    if not _pyenv_has(version):
        pytest.skip(f"Python {version} is not installed with pyenv here")
    completed = subprocess.run(
        ["bash", str(SCRIPT), version],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    assert "work on Python" in completed.stdout


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


@pytest.mark.xfail(strict=True, reason="#14: CI runs only Python 3.11")
def test_ci_runs_the_oldest_and_newest_claimed_python():
    ci = _ci_text()
    minimum = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    oldest = re.search(r"(\d+\.\d+)", minimum).group(1)
    assert "check_old_python" in ci or f'"{oldest}"' in ci, "CI never runs the oldest Python"
    assert re.search(r"3\.1[3-9]", ci), "CI never runs the newest Python"


@pytest.mark.xfail(
    strict=True, reason="#14: transformers>=4.46 claimed, 5.x APIs used, 4.x untested"
)
def test_transformers_floor_is_tested_or_pinned_to_what_is_tested():
    floor = _requirement_floor("transformers")
    assert floor is not None
    floor_text = ".".join(map(str, floor))
    tested_in_ci = re.search(rf"transformers[=~]=+{re.escape(floor_text)}", _ci_text())
    assert floor >= (5,) or tested_in_ci, f"transformers>={floor_text} is claimed, never tested"
