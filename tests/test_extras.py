"""``pip install maskprep`` builds, inspects and merges without torch or datasets; what needs them
says which extra to install. Run in subprocesses where those packages are hidden as if not
installed (``tests/without/sitecustomize.py``); CI also proves it in fresh environments."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLE

from maskprep import ConfigError
from maskprep.extras import require_extra

pytestmark = pytest.mark.integration

HIDE = "torch,datasets,ray"


def _python(tmp_path, code: str, hide: str = HIDE) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "without"), str(ROOT)]),
        "MASKPREP_TEST_HIDE": hide,
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )


def _maskprep(*args: str) -> str:
    """Python code running ``maskprep ARGS`` in this process, its exit code printed."""
    return (
        "from maskprep.cli import main\n"
        f"try:\n    main({list(args)!r}, standalone_mode=False)\n    code = 0\n"
        "except SystemExit as stop:\n    code = stop.code\n"
        "except Exception as error:\n"
        "    import click\n"
        "    if not isinstance(error, click.ClickException): raise\n"
        "    error.show(); code = error.exit_code\n"
        "print('exit', code)\n"
    )


BUILD = [
    "build", str(SAMPLE / "instructions.jsonl"), str(SAMPLE / "notes.txt"),
    "--tokenizer", str(SAMPLE / "tokenizer"), "--pad-token", "eos", "--add-eos",
    "--max-length", "64", "-q",
]  # fmt: skip


def test_hiding_works(tmp_path):
    # The premise of the tests below: a hidden package cannot be found or imported.
    code = (
        "import importlib.util, transformers\n"
        "print(importlib.util.find_spec('torch'), transformers.is_torch_available())\n"
        "import torch\n"
    )
    done = _python(tmp_path, code)
    assert done.stdout.splitlines()[0] == "None False"
    assert "ModuleNotFoundError: No module named 'torch'" in done.stderr
    if importlib.util.find_spec("torch") is not None:  # negative control, where torch is installed
        assert _python(tmp_path, "import torch", hide="").returncode == 0


def test_build_inspect_merge_without_torch_or_datasets(tmp_path):
    code = "\n".join(
        [
            _maskprep(*BUILD, "-o", "out", "--tokenizer-cache", "cache"),
            _maskprep(*BUILD, "-o", "warm", "--tokenizer-cache", "cache"),
            _maskprep("inspect", "out", "--json"),
            _maskprep(*BUILD, "--num-parts", "2", "--part-index", "0", "-o", "p0"),
            _maskprep(*BUILD, "--num-parts", "2", "--part-index", "1", "-o", "p1"),
            _maskprep("merge", "p0", "p1", "-o", "merged"),
            "import sys",
            "print('loaded', sorted(m for m in ('torch', 'datasets', 'ray') if m in sys.modules))",
        ]
    )
    done = _python(tmp_path, code)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("exit")] == ["exit 0"] * 6, done.stdout
    assert lines[-1] == "loaded []"
    report = json.loads(done.stdout[done.stdout.index("{") : done.stdout.rindex("}") + 1])
    assert report["ok"] is True
    assert (tmp_path / "out" / "data-00000.parquet").read_bytes() == (
        tmp_path / "warm" / "data-00000.parquet"
    ).read_bytes()
    assert "PyTorch was not found" not in done.stderr  # transformers' advice is not shown


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            _maskprep(*BUILD, "-o", "out")
            + _maskprep("verify", "out", "--model", str(SAMPLE / "tiny-llama"), "--from-config"),
            "Error: verify needs torch, which is not installed: pip install 'maskprep[verify]'\n",
        ),
        (
            _maskprep(*BUILD, "-o", "ray", "--engine", "ray"),
            "Error: --engine ray needs Ray, which is not installed: pip install 'maskprep[ray]'\n",
        ),
    ],
    ids=["verify", "ray"],
)
def test_missing_extra_is_one_line_naming_it(tmp_path, code, message):
    done = _python(tmp_path, code)
    assert done.stdout.strip().splitlines()[-1] == "exit 2"
    assert done.stderr == message


def test_load_dataset_names_its_extra(tmp_path):
    code = "\n".join(
        [
            _maskprep(*BUILD, "-o", "out"),
            "import maskprep",
            "try:\n    maskprep.load_dataset('out')\n"
            "except maskprep.ConfigError as error:\n    print(error)",
        ]
    )
    done = _python(tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        "load_dataset needs datasets, which is not installed: pip install 'maskprep[datasets]'"
    )


def test_collate_names_its_extra(tmp_path):
    code = (
        "from maskprep.collate import collate\n"
        "try:\n    collate([{'input_ids': [5], 'attention_mask': [1], 'labels': [5]}], pad_id=0)\n"
        "except Exception as error:\n    print(type(error).__name__, error)"
    )
    done = _python(tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "ConfigError collate needs torch, which is not installed: pip install 'maskprep[train]'"
    )


def test_require_extra():
    require_extra("json", "none", "this test")  # negative control: installed
    with pytest.raises(ConfigError, match=r"^x needs no_such_module_q, .*'maskprep\[e\]'$"):
        require_extra("no_such_module_q", "e", "x")
    with pytest.raises(ConfigError, match="no_such_parent"):
        require_extra("no_such_parent.child", "e", "x")
