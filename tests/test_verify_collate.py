"""maskprep verify --collate SPEC: the probes judge the batches a caller's collate function makes,
against what the output says each row holds. Every common wrong feed of issue #21 is caught (the
negative controls of the probes), maskprep's own collator passes, and a SPEC that cannot be
loaded or called, or returns what no model takes, is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLE
from rowkit import one_torch_thread, tiny_config
from training_kit import build_output

import maskprep
from maskprep import VerifyOptions
from maskprep.cli import main
from maskprep.errors import ConfigError

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch", reason="needs the verify extra (torch)")

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
TINY_LLAMA = SAMPLE / "tiny-llama"
FAST = ["--from-config", "--rows", "4", "--longest", "0"]


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    """The sample notes packed at 96 with pad == eos, every document ending in EOS."""
    root = tmp_path_factory.mktemp("pack")
    return build_output(
        root / "out",
        [SAMPLE / "notes.txt"],
        SAMPLE / "tokenizer",
        "pack",
        max_length=96,
        pad_token="eos",
        add_eos=True,
    )


@pytest.fixture(scope="module")
def minilm_pack(tmp_path_factory, minilm) -> Path:
    root = tmp_path_factory.mktemp("minilm")
    return build_output(root / "out", [SAMPLE / "notes.txt"], minilm, "pack", max_length=64)


def _spec(directory: Path, body: str, name: str = "feed.py") -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return f"{path}:collate"


def _run(runner, output: Path, model: Path, spec: str, *args: str):
    return runner.invoke(
        main, ["verify", str(output), "-m", str(model), "--collate", spec, "--json", *args]
    )


def _report(result, code: int) -> dict:
    assert result.exit_code == code, (result.output, result.stderr)
    return json.loads(result.stdout)


def _checks(report: dict) -> dict[str, dict]:
    return {c["probe"]: c for c in report["checks"]}


def _tokenizer_spec(tmp_path: Path, collator: str, tokenizer: Path, pad_is_eos: bool) -> str:
    pad = "tokenizer.pad_token = tokenizer.eos_token\n" if pad_is_eos else ""
    return _spec(
        tmp_path,
        "from transformers import AutoTokenizer, DataCollatorForLanguageModeling, "
        "DataCollatorWithPadding\n"
        f"tokenizer = AutoTokenizer.from_pretrained({str(tokenizer)!r})\n{pad}"
        f"collate = {collator}\n",
    )


def test_default_data_collator_on_a_pack_leaks_and_names_the_fix(runner, pack) -> None:
    result = _run(runner, pack, TINY_LLAMA, "transformers:default_data_collator", *FAST)
    report = _report(result, 1)
    checks = _checks(report)
    assert report["collate"] == "transformers:default_data_collator"
    for probe in ("cross_document", "unpadded_reference"):
        check = checks[probe]
        assert check["status"] == "LEAK" and check["fix"] == "collator", check
        assert check["max_diff"] > 100 * check["tolerance"]
        assert isinstance(check["worst_row"], int) and check["worst_row"] in report["rows"]
        assert f"Collator.for_output({str(pack)!r}, model=model)" in check["note"]
        assert "a 2D attention_mask" in check["note"]
    structure = checks["mask_structure"]
    assert structure["status"] == "LEAK" and "fed a 2D mask" in structure["note"]
    assert "see tokens of another document" in structure["note"]
    # The labels of a plain stack are the output's own: nothing to say about them.
    assert checks["labels_extra"]["status"] == checks["labels_missing"]["status"] == "pass"
    shown = runner.invoke(
        main,
        ["verify", str(pack), "-m", str(TINY_LLAMA), "--collate",
         "transformers:default_data_collator", *FAST],
    )  # fmt: skip
    assert shown.exit_code == 1
    # The table's title wraps at 160 columns, where depends on the checkout's path: read it as
    # words.
    words = " ".join(shown.stdout.split())
    assert "LEAK FOUND" in words and "fed by transformers:default_data_collator" in words
    assert f"fix: train with Collator.for_output({str(pack)!r}, model=model)" in shown.stdout


def test_maskprep_collator_passes(runner, pack, tmp_path) -> None:
    spec = _spec(
        tmp_path,
        "from maskprep.collate import Collator\n"
        f"collate = Collator.for_output({str(pack)!r}, model={str(TINY_LLAMA)!r})\n",
    )
    report = _report(_run(runner, pack, TINY_LLAMA, spec, *FAST), 0)
    checks = _checks(report)
    assert {c["status"] for c in report["checks"]} == {"pass"}
    assert checks["cross_document"]["control_diff"] > checks["cross_document"]["tolerance"]
    assert "real EOS trained" in checks["labels_missing"]["note"]


def test_data_collator_with_padding_on_a_pack_leaks(runner, pack, tmp_path) -> None:
    spec = _tokenizer_spec(
        tmp_path, "DataCollatorWithPadding(tokenizer)", SAMPLE / "tokenizer", pad_is_eos=True
    )
    checks = _checks(_report(_run(runner, pack, TINY_LLAMA, spec, *FAST), 1))
    assert checks["cross_document"]["status"] == "LEAK"


def test_language_modeling_collator_with_pad_eos_drops_every_eos(runner, pack, tmp_path) -> None:
    """pad == eos: labels masked by value drop every real EOS, and every document's first token
    is trained (predicted from the previous document), on top of the 2D mask."""
    spec = _tokenizer_spec(
        tmp_path,
        "DataCollatorForLanguageModeling(tokenizer, mlm=False)",
        SAMPLE / "tokenizer",
        pad_is_eos=True,
    )
    report = _report(_run(runner, pack, TINY_LLAMA, spec, *FAST), 1)
    checks = _checks(report)
    missing, extra = checks["labels_missing"], checks["labels_extra"]
    assert missing["status"] == "LEAK" and missing["fix"] == "collator"
    assert "real EOS trained 0 of" in missing["note"] and "pad == eos" in missing["note"]
    assert extra["status"] == "LEAK" and "first tokens of a document" in extra["note"]
    assert checks["cross_document"]["status"] == "LEAK"


def test_minilm_with_data_collator_with_padding_on_a_pack_leaks(
    runner, minilm, minilm_pack, tmp_path
) -> None:
    spec = _tokenizer_spec(tmp_path, "DataCollatorWithPadding(tokenizer)", minilm, pad_is_eos=False)
    report = _report(_run(runner, minilm_pack, minilm, spec, "--rows", "2", "--longest", "0"), 1)
    checks = _checks(report)
    assert report["kind"] == "encoder"
    assert checks["cross_document"]["status"] == checks["unpadded_reference"]["status"] == "LEAK"
    assert checks["unpadded_reference"]["max_diff"] > 1


def test_minilm_fed_causal_blocks_is_caught(runner, minilm, minilm_pack, tmp_path) -> None:
    """Collator.for_output(OUT) without model= no longer guesses (the spec fails to load); told
    causal=True it feeds an encoder causal blocks, which verify sees."""
    guessed = _spec(
        tmp_path,
        "from maskprep.collate import Collator\n"
        f"collate = Collator.for_output({str(minilm_pack)!r})\n",
    )
    result = _run(runner, minilm_pack, minilm, guessed, "--rows", "2")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert f"collate {guessed}: loading" in line and "ValueError" in line
    assert "give model=" in line and "feed.py:2" in line
    causal = _spec(
        tmp_path,
        "from maskprep.collate import Collator\n"
        f"collate = Collator.for_output({str(minilm_pack)!r}, causal=True)\n",
        name="causal.py",
    )
    report = _report(_run(runner, minilm_pack, minilm, causal, "--rows", "2", "--longest", "0"), 1)
    reference = _checks(report)["unpadded_reference"]
    assert reference["status"] == "LEAK" and reference["max_diff"] > 1
    assert "full blocks for an encoder" in reference["note"]
    assert "4D attention_mask" in reference["note"]
    structure = _checks(report)["mask_structure"]
    assert structure["status"] == "LEAK"
    assert "hidden tokens of their own document" in structure["note"]


def test_a_masked_lm_feed_is_judged_on_its_restored_tokens(minilm, minilm_pack) -> None:
    """The masked-LM recipe corrupts ids; each fed row is placed by the ids its labels restore,
    and maskprep's collator under it passes."""
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    from maskprep import IGNORE_INDEX
    from maskprep.collate import Collator

    collator = Collator.for_output(minilm_pack, model=str(minilm))
    masking = DataCollatorForLanguageModeling(AutoTokenizer.from_pretrained(str(minilm)))

    def masked_lm(rows):
        batch = collator(rows)
        skip = batch["labels"] == IGNORE_INDEX
        batch["input_ids"], batch["labels"] = masking.torch_mask_tokens(batch["input_ids"], skip)
        return batch

    torch.manual_seed(0)
    options = VerifyOptions(rows=2, longest=0)
    result = maskprep.verify(minilm_pack, str(minilm), options, collate=masked_lm)
    assert result.ok, [c for c in result.checks if c.status != "pass"]
    assert result.collate.endswith("masked_lm")


def test_the_function_is_handed_what_trainer_hands_or_every_column(pack) -> None:
    from maskprep.collate import Collator

    collator = Collator.for_output(pack, model=str(TINY_LLAMA))
    handed: list[set[str]] = []

    def recording(rows):
        handed.append(set(rows[0]))
        return collator(rows)

    options = VerifyOptions(from_config=True, rows=2, longest=0)
    assert maskprep.verify(pack, TINY_LLAMA, options, collate=recording).ok
    assert handed[0] == {"input_ids", "attention_mask", "labels", "position_ids"}
    handed.clear()
    every = VerifyOptions(from_config=True, rows=2, longest=0, collate_columns="all")
    assert maskprep.verify(pack, TINY_LLAMA, every, collate=recording).ok
    assert handed[0] == {
        "input_ids",
        "attention_mask",
        "labels",
        "position_ids",
        "seq_lens",
        "length",
    }


def test_a_spec_file_need_not_be_importable(runner, pack, tmp_path) -> None:
    """A folder and a file name no import statement could name; the file imports a sibling, as
    ``python file.py`` lets it, and defines a dataclass (which needs its module registered)."""
    folder = tmp_path / "my feeds-v1.2"
    _spec(folder, "from transformers import default_data_collator\n", name="helpers_21a.py")
    spec = _spec(
        folder,
        "from dataclasses import dataclass\n"
        "from helpers_21a import default_data_collator\n"
        "@dataclass\n"
        "class Feed:\n"
        "    def __call__(self, rows):\n"
        "        return default_data_collator(rows)\n"
        "collate = Feed()\n",
        name="my-collate.v2.py",
    )
    report = _report(_run(runner, pack, TINY_LLAMA, spec, *FAST), 1)
    assert _checks(report)["cross_document"]["status"] == "LEAK"


def test_a_module_of_the_working_directory_is_found(runner, pack, tmp_path, monkeypatch) -> None:
    """The console script does not put the working directory on sys.path: module:NAME of a file
    there still loads."""
    _spec(tmp_path, "from transformers import default_data_collator as collate\n", "feeds_21a.py")
    monkeypatch.chdir(tmp_path)
    report = _report(_run(runner, pack, TINY_LLAMA, "feeds_21a:collate", *FAST), 1)
    assert _checks(report)["cross_document"]["status"] == "LEAK"


@pytest.mark.parametrize(
    ("body", "name", "expected"),
    [
        (None, "absent.py", r"no such file: .*absent\.py"),
        ("def collate(rows:\n", "broken.py", r"broken\.py:1: SyntaxError"),
        ("import json\nraise RuntimeError('no GPU here')\n", "raises.py",
         r"loading .*raises\.py raised RuntimeError: no GPU here \(raises\.py:2\)"),
        ("feed = 1\n", "nameless.py", r"has no 'collate'"),
        ("collate = 42\n", "number.py", r"is a int, not a function"),
        ("from transformers import DataCollatorWithPadding as collate\n", "klass.py",
         r"DataCollatorWithPadding is a class; name an instance"),
    ],
)  # fmt: skip
def test_a_spec_that_cannot_be_had_is_one_line(runner, pack, tmp_path, body, name, expected):
    path = tmp_path / name
    if body is not None:
        path.write_text(body, encoding="utf-8")
    spec = f"{path}:collate"
    result = _run(runner, pack, TINY_LLAMA, spec, *FAST)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: collate {spec}")
    assert pytest.importorskip("re").search(expected, line), line
    assert json.loads(result.stdout)["error"]["type"] == "ConfigError"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no_such_package_21a.feeds:collate", r"no module named 'no_such_package_21a'"),
        ("transformers:no_such_collator", r"transformers has no 'no_such_collator'"),
        ("collate_without_a_name", r"give path/to/file\.py:NAME or package\.module:NAME"),
    ],
)
def test_a_module_spec_that_cannot_be_had_is_one_line(runner, pack, spec, expected) -> None:
    import re

    result = _run(runner, pack, TINY_LLAMA, spec, *FAST)
    assert result.exit_code == 2
    assert re.search(expected, result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("def collate(rows):\n    raise KeyError('seq_lens')\n",
         r"feed\.py:collate raised on rows .*: KeyError: missing key 'seq_lens' \(feed\.py:2\)"),
        ("def collate(rows):\n    return [r['input_ids'] for r in rows]\n",
         r"returned a list for rows .*, not a dict of model keyword arguments"),
        ("import numpy as np\ndef collate(rows):\n"
         "    return {'input_ids': np.array([r['input_ids'] for r in rows])}\n",
         r"returned input_ids as a ndarray .*a tensor is needed"),
        ("import torch\ndef collate(rows):\n"
         "    return {'input_ids': torch.tensor([r['input_ids'] for r in rows]),\n"
         "            'attention_mask': [r['attention_mask'] for r in rows]}\n",
         r"returned attention_mask as a list, not a tensor"),
        ("import torch\ndef collate(rows):\n"
         "    return {'input_ids': torch.tensor([r['input_ids'] for r in rows[:1]])}\n",
         r"returned input_ids of shape \(1, 96\) .* for 4 rows"),
        ("import torch\ndef collate(rows):\n"
         "    return {'input_ids': torch.tensor([r['input_ids'] for r in rows][::-1])}\n",
         r"returned row 0 of the batch .* without the \d+ tokens of row \d+ .*cannot be judged"),
    ],
)  # fmt: skip
def test_a_function_whose_batches_cannot_be_fed_is_one_line(runner, pack, tmp_path, body, expected):
    import re

    spec = _spec(tmp_path, body)
    result = _run(runner, pack, TINY_LLAMA, spec, *FAST)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert re.search(expected, line), line


def test_extra_keys_are_said_and_maskprep_refusals_keep_their_exit_code(pack, tmp_path) -> None:
    from transformers import default_data_collator

    from maskprep.collate import Collator

    def with_length(rows):
        batch = default_data_collator([{k: v for k, v in r.items()} for r in rows])
        batch["length"] = torch.tensor([sum(r["attention_mask"]) for r in rows])
        return batch

    options = VerifyOptions(from_config=True, rows=2, longest=0, collate_columns="all")
    stripped = VerifyOptions(from_config=True, rows=2, longest=0)
    with pytest.raises(ConfigError, match=r"raised on rows .*ValueError"):
        # default_data_collator cannot stack the ragged seq_lens of every column
        maskprep.verify(pack, TINY_LLAMA, options, collate=default_data_collator)
    result = maskprep.verify(pack, TINY_LLAMA, stripped, collate=with_length)
    assert any(
        "returns 'length', which LlamaForCausalLM.forward does not name" in w
        for w in result.warnings
    )

    def stripped_rows(rows):
        return Collator.for_output(pack, model=str(TINY_LLAMA))(
            [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in rows]
        )

    with pytest.raises(maskprep.DataError, match=r"stripped_rows on rows .*: packed rows arrived"):
        maskprep.verify(pack, TINY_LLAMA, stripped, collate=stripped_rows)


def test_positions_past_the_model_are_refused_before_a_forward_pass(tmp_path) -> None:
    """A pack wider than GPT-2's table fits it only fed position_ids per document: a feed
    without them would number the whole row."""
    from transformers import default_data_collator

    gpt2 = tmp_path / "gpt2"
    config = tiny_config("gpt2", 600)
    config.n_positions = 64
    config.save_pretrained(gpt2)
    out = build_output(
        tmp_path / "pack", [SAMPLE / "notes.txt"], SAMPLE / "tokenizer", "pack",
        max_length=96, pad_token="eos", add_eos=True,
    )  # fmt: skip

    def numbered_by_the_model(rows):
        return default_data_collator(
            [{k: v for k, v in r.items() if k != "position_ids"} for r in rows]
        )

    options = VerifyOptions(from_config=True, rows=2, longest=1)
    with pytest.raises(
        maskprep.DataError,
        match=r"^row \d+: .*numbered_by_the_model feeds it position 95, but .* has 64 position",
    ):
        maskprep.verify(out, gpt2, options, collate=numbered_by_the_model)


def test_collate_options_that_set_up_maskprep_collator_are_refused(runner, pack) -> None:
    spec = "transformers:default_data_collator"
    for extra in (["--pack-forms", "mask4d"], ["--pad-position-ids"]):
        result = _run(runner, pack, TINY_LLAMA, spec, *FAST, *extra)
        assert result.exit_code == 2 and "with --collate your function decides" in result.stderr
    alone = runner.invoke(
        main, ["verify", str(pack), "-m", str(TINY_LLAMA), "--collate-columns", "all"]
    )
    assert alone.exit_code == 2 and "--collate-columns needs --collate" in alone.stderr
