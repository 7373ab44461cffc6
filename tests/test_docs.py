"""The documentation stays true: every option of every command is in docs/cli.md, every relative
link resolves (file and anchor), every check links to its rule, CI runs the README's commands and
the README's library snippet runs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from maskprep.cli import main
from maskprep.inspecting.checks import CHECKS

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
    assert _slug("Array jobs: `--num-parts` and `maskprep merge`") == (
        "array-jobs---num-parts-and-maskprep-merge"
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
    commands = [
        block.strip()
        for block in _readme_blocks("bash")
        if re.search(r"pip install (-c \S+ )?-e ", block)
    ]
    assert len(commands) == 2, "the README has two commands: try it, run the tests"
    assert "torch" not in commands[0], "the main job installs no torch"
    # The tests install the stack they last passed with, so the command passes on any day.
    assert "-c .ci/constraints.txt" in commands[1]
    assert (ROOT / ".ci" / "constraints.txt").is_file()
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


# The recipes of docs/operations.md (KubeRay, a Kubernetes indexed job, Slurm): every `maskprep`
# command in them parses with the real command line, and the part index comes from the variable
# the platform sets.
OPERATIONS = ROOT / "docs" / "operations.md"
RECIPES = "## Recipes: KubeRay, Kubernetes indexed jobs, Slurm"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
#: What each platform sets for the index of a task (Kubernetes' Job controller in every pod of an
#: Indexed Job; Slurm in every task of an array job).
K8S_INDEX = "JOB_COMPLETION_INDEX"
SLURM_INDEX = "SLURM_ARRAY_TASK_ID"


def _recipe_blocks(text: str) -> dict[str, list[str]]:
    """The fenced blocks of the recipes section, by language."""
    start = text.index(RECIPES)
    end = text.find("\n## ", start + len(RECIPES))
    blocks: dict[str, list[str]] = {}
    for language, body in _BLOCK.findall(text[start : end if end > 0 else None]):
        blocks.setdefault(language, []).append(body)
    return blocks


def _maskprep_argvs(script: str) -> list[list[str]]:
    """The arguments of every `maskprep` command in a shell script (continued lines joined),
    also inside a quoted string such as `sbatch --wrap "maskprep ..."`."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            if word == "maskprep":
                found.append(words[i + 1 :])
                break
            if word.startswith("maskprep "):
                found += _maskprep_argvs(word)
    return found


def _parse(argv: list[str], variables: dict[str, str]) -> click.Context:
    """Parse a `maskprep` command line with the real CLI, without running it, after putting in
    the variables a task would see (any other variable is an error: nothing would set it)."""

    def value(match: re.Match) -> str:
        if match.group(1) not in variables:
            raise AssertionError(f"${match.group(1)} is not set where this runs: {argv}")
        return variables[match.group(1)]

    name, *args = [_VARIABLE.sub(value, word) for word in argv]
    return main.commands[name].make_context(name, args)


def _container_argvs(container: dict) -> list[list[str]]:
    command = [*container.get("command", []), *container.get("args", [])]
    if command[:2] == ["sh", "-c"]:
        return _maskprep_argvs(command[2])
    assert command[0] == "maskprep", command
    return [command[1:]]


def _packs_or_buckets(build: click.Context) -> None:
    """A recipe for a large corpus does not pad every document to the full row length."""
    assert build.params["strategy"] in ("pack", "bucket"), build.params["strategy"]


def _check_kuberay(document: dict) -> click.Context:
    assert (document["apiVersion"], document["kind"]) == ("ray.io/v1", "RayJob")
    spec = document["spec"]
    cluster = spec["rayClusterSpec"]
    # No CPUs on the head: the parts run on the workers.
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["workerGroupSpecs"] and all(
        g["replicas"] >= 1 for g in cluster["workerGroupSpecs"]
    )
    (argv,) = _maskprep_argvs(spec["entrypoint"])
    build = _parse(argv, {})
    assert build.command.name == "build" and build.params["engine"] == "ray"
    _packs_or_buckets(build)
    assert build.params["output"].startswith("s3://")
    assert all(i.startswith("s3://") for i in build.params["inputs"])
    return build


def _check_indexed_job(parts: dict, merge: dict) -> None:
    assert (parts["apiVersion"], parts["kind"]) == ("batch/v1", "Job")
    assert parts["spec"]["completionMode"] == "Indexed"
    count = parts["spec"]["completions"]
    (container,) = parts["spec"]["template"]["spec"]["containers"]
    (argv,) = _container_argvs(container)
    outputs = []
    for index in range(count):
        build = _parse(argv, {K8S_INDEX: str(index)})
        assert build.command.name == "build"
        _packs_or_buckets(build)
        assert (build.params["num_parts"], build.params["part_index"]) == (count, index)
        outputs.append(build.params["output"])
    assert len(set(outputs)) == count  # one output per part
    (container,) = merge["spec"]["template"]["spec"]["containers"]
    (argv,) = _container_argvs(container)
    merged = _parse(argv, {})
    assert merged.command.name == "merge" and list(merged.params["parts"]) == outputs


def _check_slurm(array_script: str, submit_script: str) -> None:
    (array,) = re.findall(r"^#SBATCH --array=(\d+)-(\d+)$", array_script, re.MULTILINE)
    indices = range(int(array[0]), int(array[1]) + 1)
    (argv,) = _maskprep_argvs(array_script)
    outputs = []
    for index in indices:
        build = _parse(argv, {SLURM_INDEX: str(index)})
        assert build.command.name == "build"
        _packs_or_buckets(build)
        assert (build.params["num_parts"], build.params["part_index"]) == (len(indices), index)
        outputs.append(build.params["output"])
    assert re.search(r"sbatch --dependency=afterok:\S+ .*--wrap", submit_script)
    (argv,) = _maskprep_argvs(submit_script)
    merged = _parse(argv, {})
    assert merged.command.name == "merge" and list(merged.params["parts"]) == outputs


def _check_recipes(text: str) -> None:
    yaml = pytest.importorskip("yaml")  # PyYAML: installed with transformers
    blocks = _recipe_blocks(text)
    documents = [d for block in blocks["yaml"] for d in yaml.safe_load_all(block)]
    kinds = [d["kind"] for d in documents]
    assert kinds == ["RayJob", "Job", "Job"], kinds
    _check_kuberay(documents[0])
    _check_indexed_job(documents[1], documents[2])
    scripts = [b for b in blocks["bash"] if "sbatch" in b]
    assert len(scripts) == 2, scripts
    _check_slurm(*scripts)


def test_the_cluster_recipes_parse_and_use_the_platform_index():
    _check_recipes(OPERATIONS.read_text())


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ('--part-index "$SLURM', '--part-idx "$SLURM', click.NoSuchOption),  # misspelt flag
        ("--engine ray --num", "--engine rey --num", click.BadParameter),  # not a choice
        ('"$JOB_COMPLETION_INDEX"', '"$JOB_INDEX"', AssertionError),  # nothing sets it
        ("  completionMode: Indexed", "  completionMode: NonIndexed", AssertionError),
        ("#SBATCH --array=0-3", "#SBATCH --array=0-4", AssertionError),  # 5 tasks for 4 parts
        ("  - s3://my-bucket/parts/3\n", "\n", AssertionError),  # the merge misses a part
        ("sbatch --dependency=afterok:", "sbatch --dependency=after:", AssertionError),
        ("2048 --strategy pack \\\n", "2048 \\\n", AssertionError),  # Slurm pads to 2048
        ("    --strategy pack --engine ray", "    --engine ray", AssertionError),  # so does Ray
        ("              --strategy pack --num", "              --num", AssertionError),
    ],
)
def test_the_recipe_check_catches_a_broken_recipe(old, new, error):
    text = OPERATIONS.read_text()
    start = text.index(RECIPES)
    end = text.index("\n## ", start + len(RECIPES))
    recipes = text[start:end]
    assert recipes.count(old) == 1, old
    with pytest.raises(error):
        _check_recipes(text[:start] + recipes.replace(old, new) + text[end:])
