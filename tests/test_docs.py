"""The documentation stays true: every option of every command is in docs/cli.md, every relative
link resolves (file and anchor), every check links to its rule, CI runs the README's commands and
the README's library snippet runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from maskprep.checks.specs import CHECKS
from maskprep.cli import main

README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
PAGES = sorted([README, ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")])

# [text](target) outside code; images and bare URLs aside.
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")


def _commands(group: click.Group, prefix: str = "maskprep") -> list[tuple[str, click.Command]]:
    """Every command under ``group``, subcommands of subgroups too, with its full name."""
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix} {name}")
    return found


def _options(command: click.Command) -> list[str]:
    return [
        flag
        for param in command.params
        for flag in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
        if flag.startswith("--") and flag != "--help"
    ]


def _documented(flag: str, text: str) -> bool:
    """Whether ``flag`` appears in ``text`` as itself, not inside a longer option."""
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def _prose(text: str) -> str:
    """Markdown without fenced blocks and inline code, where links are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    headings = re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", text), re.MULTILINE)
    return {_slug(h) for h in headings} | set(re.findall(r'<a id="([^"]+)"></a>', text))


def _resolves(page: Path, target: str) -> str | None:
    """Why ``target``, a link on ``page``, does not resolve; ``None`` when it does."""
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    if not file.exists():
        return f"{target}: no such file"
    if anchor and file.suffix == ".md" and anchor not in _anchors(file):
        return f"{target}: no anchor #{anchor} in {file.name}"
    return None


@pytest.mark.parametrize(("name", "command"), _commands(main), ids=[n for n, _ in _commands(main)])
def test_every_command_and_option_is_in_the_cli_reference(name, command):
    text = CLI_DOC.read_text(encoding="utf-8")
    assert f"## `{name}`" in text, f"{name} has no section in docs/cli.md"
    missing = [flag for flag in _options(command) if not _documented(flag, text)]
    assert missing == [], f"{name}: options missing from docs/cli.md"


def test_the_option_walk_sees_every_option():
    # Negative control: the walk finds a flag, a paired flag and a deep option.
    build = dict(_commands(main))["maskprep build"]
    flags = _options(build)
    assert {"--max-length", "--no-add-eos", "--tokenizer-cache"} <= set(flags)
    assert _documented("--add-eos", "| `--add-eos/--no-add-eos` |")
    assert not _documented("--add-eos", "| `--add-eos-twice` | `--no-add-eos` |")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    links = _LINK.findall(_prose(page.read_text(encoding="utf-8")))
    relative = [t for t in links if not re.match(r"^[a-z]+:", t)]
    broken = [why for t in relative if (why := _resolves(page, t)) is not None]
    assert broken == []


def test_link_check_sees_a_broken_link(tmp_path):
    # Negative control: a missing file and a missing anchor are both reported.
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[a](missing.md) [b](#nowhere) [c](#title)\n")
    assert _resolves(page, "missing.md") == "missing.md: no such file"
    assert _resolves(page, "#title") is None
    assert "no anchor #nowhere" in (_resolves(page, "#nowhere") or "")


def test_slug_follows_github():
    assert _slug("Array jobs: `--num-shards` and `maskprep merge`") == (
        "array-jobs---num-shards-and-maskprep-merge"
    )


@pytest.mark.parametrize("spec", CHECKS, ids=[s.name for s in CHECKS])
def test_every_check_links_to_its_rule(spec):
    page, _, anchor = spec.reference.partition("#")
    assert anchor in _anchors(ROOT / page), f"{spec.name}: {spec.reference} is not in the docs"
    if spec.kind == "invariant":
        assert spec.invariant is not None, f"{spec.name} is an invariant without a number"
        section = (ROOT / page).read_text(encoding="utf-8").split(f'id="{anchor}"')[1]
        assert f"`{spec.name}`" in section.split("<a id=")[0], "the invariant names its check"


def test_a_failed_check_names_its_invariant(tmp_path, runner):
    shard = tmp_path / "bad.parquet"
    rows = {
        "input_ids": [[5, 6, 0, 0], [5, 6, 7, 0]],
        "attention_mask": [[1, 1, 0, 0], [1, 1, 1, 0]],
        "labels": [[5, 6, 0, -100], [5, 6, 7, -100]],  # row 0: a label on padding
        "length": [2, 3],
    }
    pq.write_table(pa.table(rows), shard)
    done = runner.invoke(main, ["inspect", str(shard), "--pad-id", "0"])
    assert done.exit_code == 1
    assert "FAILED: 1 check(s): labels_on_padding (docs/contract.md#invariant-2)" in done.stdout
    done = runner.invoke(main, ["inspect", str(shard), "--pad-id", "0", "--json"])
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["labels_on_padding"]["invariant"] == 2
    assert checks["labels_on_padding"]["reference"] == "docs/contract.md#invariant-2"
    assert checks["eos_never_trained"]["invariant"] is None
    assert checks["eos_never_trained"]["reference"] == "docs/inspect.md#check-eos_never_trained"


def _readme_blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_ci_runs_the_readme_commands_exactly():
    commands = [block.strip() for block in _readme_blocks("bash") if "pip install -e" in block]
    assert len(commands) == 2, "the README has two commands: try it, run the tests"
    assert "torch" not in commands[0], "the main job installs no torch"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in ci, f"not run by .ci/run as the README gives it: {command}"


def test_readme_library_snippet_runs(tmp_path, monkeypatch):
    (snippet,) = _readme_blocks("python")
    monkeypatch.chdir(ROOT)  # the snippet names sample_data/ relative to the checkout
    code = snippet.replace('"out/library"', repr(str(tmp_path / "library")))
    assert code != snippet, "the snippet's output directory moved: update this test"
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "library" / "_maskprep.json").is_file()


def test_every_command_has_help():
    for name, command in _commands(main):
        assert command.help, name


def test_inspect_tokenizer_help_says_what_inspect_uses_it_for():
    option = next(p for p in main.commands["inspect"].params if p.name == "tokenizer")
    text = " ".join((option.help or "").split())
    for use in ("decodes --rows/--row", "EOS id", "vocabulary size", "model_max_length"):
        assert use in text, (use, text)
