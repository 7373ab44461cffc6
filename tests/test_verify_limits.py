"""Rows against the model's positions and vocabulary, before any forward pass: verify fails rows
beyond an absolute position table in one line and warns beyond a rotary context; inspect does the
same with --model or a tokenizer's model_max_length; build warns when --max-length exceeds the
tokenizer's model_max_length."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl
from rowkit import one_torch_thread, pack_rows, pad_rows, random_docs, tiny_config

from maskprep import DataError, VerifyOptions
from maskprep.cli import main
from maskprep.inspecting.checks import CHECKS
from maskprep.output.names import MANIFEST_NAME
from maskprep.verifying.driver import verify_rows

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch", reason="needs the verify extra (torch)")

PAD = 3
_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
EAGER = VerifyOptions(attn_implementations=("eager",))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    out = {}
    for kind in ("gpt2", "bert", "llama"):
        tiny_config(kind).save_pretrained(root / kind)  # 128 positions each
        out[kind] = root / kind
    tiny_config("gpt2", vocab_size=100).save_pretrained(root / "gpt2-small-vocab")
    out["gpt2-small-vocab"] = root / "gpt2-small-vocab"
    return out


@pytest.fixture(scope="module")
def one_wide_row(tmp_path_factory) -> Path:
    """30 rows 12 wide, and row 23 200 wide: only a scan of every row finds it."""
    narrow = pad_rows(random_docs(1, 30), 12, PAD, "right").to_pylist()
    narrow[23] = pad_rows([list(range(10, 190))], 200, PAD, "right").to_pylist()[0]
    path = tmp_path_factory.mktemp("wide") / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(narrow), path)
    return path


def _cli(runner, *args: str):
    return runner.invoke(main, list(args))


def test_rows_beyond_an_absolute_table_fail_before_any_forward(runner, models, one_wide_row):
    """GPT-2 (n_positions 128) and a row 200 wide: one line, exit 1, no traceback, whichever rows
    the sample drew."""
    result = _cli(
        runner, "verify", str(one_wide_row), "-m", str(models["gpt2"]), "--from-config",
        "--rows", "1", "--longest", "0",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: row 23 needs 200 positions (its width), but {models['gpt2']} has 128 position "
        "embeddings: rebuild the data with a max length of at most 128\n"
    )


def test_rows_that_fit_pass_the_same_check(runner, models, tmp_path) -> None:
    """Negative control: the same model, rows exactly 128 wide."""
    path = tmp_path / "fits.parquet"
    pq.write_table(pad_rows([list(range(10, 100))], 128, PAD, "right"), path)
    result = _cli(
        runner, "verify", str(path), "-m", str(models["gpt2"]), "--from-config",
        "--attn-implementation", "eager", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["reach"], report["position_limit"], report["warnings"]) == (128, 128, [])


def test_roberta_positions_count_from_its_padding_idx() -> None:
    """RoBERTa's 66 position embeddings hold 64 positions (numbered from padding_idx + 1 = 2)."""
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    config = RobertaConfig(
        vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=66, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = RobertaForMaskedLM(config)
    wide = pad_rows([list(range(10, 70))], 65, 1, "right")
    with pytest.raises(
        DataError,
        match=r"^row 0 needs 65 positions \(its width\), but .* has 66 position embeddings, "
        r"numbered from 2: rebuild the data with a max length of at most 64$",
    ):
        verify_rows(wide, model, EAGER)
    fits = pad_rows([list(range(10, 70))], 64, 1, "right")
    assert verify_rows(fits, model, EAGER).ok


def test_a_pack_reaches_as_far_as_its_longest_document(runner, models, tmp_path) -> None:
    """Packs 200 wide of short documents fit BERT's 128 positions when fed position_ids per
    document (a warning says so); one document of 150 tokens does not."""
    short = pack_rows([random_docs(i, 8, high=300) for i in range(3)], 200, PAD)
    pq.write_table(short, tmp_path / "short.parquet")
    result = _cli(
        runner, "verify", str(tmp_path / "short.parquet"), "-m", str(models["bert"]),
        "--from-config", "--attn-implementation", "sdpa", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["reach"] < 128
    (warning,) = report["warnings"]
    assert warning.startswith("rows are 200 positions wide and ")
    assert "fail" in warning and "warning: rows are 200 positions wide" in result.stderr
    long = pack_rows([[list(range(10, 160)), [5, 6, 7]]], 200, PAD)
    pq.write_table(long, tmp_path / "long.parquet")
    result = _cli(
        runner, "verify", str(tmp_path / "long.parquet"), "-m", str(models["bert"]),
        "--from-config",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "row 0 needs 150 positions (its longest document), but" in result.output


def test_rotary_models_beyond_their_context_are_a_warning(runner, models, one_wide_row):
    result = _cli(
        runner, "verify", str(one_wide_row), "-m", str(models["llama"]), "--from-config",
        "--attn-implementation", "eager", "--rows", "2", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (warning,) = report["warnings"]
    assert warning.startswith("row 23 needs 200 positions (its width), beyond the 128-position ")
    assert "not trained on" in warning and 23 in report["longest"]
    assert result.stderr == f"warning: {warning}\n"


def test_token_ids_outside_the_vocabulary_either_way() -> None:
    from test_verify import _model

    for bad in (-5, 300):
        table = pad_rows([[5, 6, 7], [8, bad, 9]], 6, PAD, "right")
        with pytest.raises(DataError, match=rf"^row 1: token id {bad} is outside the 300-id"):
            verify_rows(table, _model("gpt2"), EAGER)


@pytest.fixture(scope="module")
def minilm_pack(tmp_path_factory, minilm) -> tuple[Path, object]:
    """The issue's case: a pack build at --max-length 2048 with MiniLM's tokenizer
    (model_max_length 512), documents of ~700 tokens."""
    from click.testing import CliRunner

    root = tmp_path_factory.mktemp("minilm-pack")
    words = "masks must never leak into attention"
    docs = [{"text": " ".join([words] * 100)}, {"text": words}, {"text": words * 2}]
    data = write_jsonl(root / "docs.jsonl", docs)
    out = root / "out"
    result = CliRunner().invoke(
        main,
        ["build", str(data), "-t", str(minilm), "-o", str(out), "--strategy", "pack",
         "--max-length", "2048", "--json"],
    )  # fmt: skip
    return out, result


def test_build_warns_when_max_length_exceeds_model_max_length(minilm_pack) -> None:
    _, result = minilm_pack
    assert result.exit_code == 0, result.output
    message = (
        "max_length 2048 exceeds the tokenizer's model_max_length 512: rows longer than the "
        "model's positions fail on absolute-position models"
    )
    assert json.loads(result.stdout)["warnings"][0].startswith(message)
    assert result.stderr.startswith(f"warning: {message}")


def test_build_summary_table_shows_the_warning_and_a_fitting_build_has_none(
    runner, tmp_path, minilm
) -> None:
    data = write_jsonl(tmp_path / "docs.jsonl", [{"text": "a short note"}])
    for length, warned in (("513", True), ("512", False)):
        out = tmp_path / f"out{length}"
        result = _cli(runner, "build", str(data), "-t", str(minilm), "-o", str(out),
                      "--max-length", length)  # fmt: skip
        assert result.exit_code == 0, result.output
        assert ("warning" in result.stdout) is warned
        assert ("model_max_length 512" in result.stderr) is warned


def test_an_unset_model_max_length_is_no_limit(runner, tmp_path, with_pad) -> None:
    """transformers' 1e30 sentinel for a tokenizer without a limit is not a limit."""
    config = json.loads((with_pad / "tokenizer_config.json").read_text())
    assert config["model_max_length"] > 10**20  # the premise
    data = write_jsonl(tmp_path / "docs.jsonl", [{"text": "a short note"}])
    result = _cli(runner, "build", str(data), "-t", str(with_pad), "-o", str(tmp_path / "o"),
                  "--max-length", "100000", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == [] and result.stderr == ""
    manifest = json.loads((tmp_path / "o" / MANIFEST_NAME).read_text())
    assert manifest["tokenizer"]["model_max_length"] is None


def test_verify_fails_the_minilm_pack_beyond_512_positions(runner, minilm_pack, minilm) -> None:
    out, _ = minilm_pack
    result = _cli(runner, "verify", str(out), "-m", str(minilm), "--from-config",
                  "--num-layers", "1")  # fmt: skip
    assert result.exit_code == 1
    assert result.output.startswith("Error: row 0 needs ")
    assert "positions (its longest document), but" in result.output
    assert result.output.endswith(
        "has 512 position embeddings: rebuild the data with a max length of at most 512\n"
    )
    assert "Traceback" not in result.output


def test_inspect_holds_rows_to_the_model(runner, minilm_pack, minilm) -> None:
    out, _ = minilm_pack
    plain = _cli(runner, "inspect", str(out), "--json")
    assert plain.exit_code == 0, plain.output
    context = next(c for c in json.loads(plain.stdout)["checks"] if c["name"] == "model_context")
    assert context["status"] == "warn" and context["rows"] == [0]
    assert "the model_max_length 512 of tokenizer" in context["detail"]
    assert _cli(runner, "inspect", str(out), "--strict").exit_code == 1
    with_model = _cli(runner, "inspect", str(out), "--model", str(minilm), "--json")
    assert with_model.exit_code == 1, with_model.output
    checks = {c["name"]: c for c in json.loads(with_model.stdout)["checks"]}
    assert checks["model_positions"]["status"] == "fail" and checks["model_positions"]["rows"]
    assert "has 512 position embeddings" in checks["model_positions"]["detail"]
    assert checks["model_vocabulary"]["status"] == "pass"


def test_inspect_model_checks_on_a_foreign_shard(runner, models, one_wide_row) -> None:
    def run(*args: str) -> dict[str, dict]:
        result = _cli(runner, "inspect", str(one_wide_row), "--json", *args)
        assert result.exit_code in (0, 1), result.output
        return {c["name"]: c for c in json.loads(result.stdout)["checks"]}

    gpt2 = run("--model", str(models["gpt2"]))["model_positions"]
    assert (gpt2["status"], gpt2["count"], gpt2["rows"]) == ("fail", 1, [23])
    llama = run("--model", str(models["llama"]))
    assert llama["model_context"]["status"] == "warn" and "model_positions" not in llama
    vocab = run("--model", str(models["gpt2-small-vocab"]))["model_vocabulary"]
    assert vocab["status"] == "fail" and vocab["count"] == 30
    plain = run()
    assert list(plain) == [spec.name for spec in CHECKS]  # nothing known, nothing added


def test_inspect_with_a_tokenizer_that_sets_model_max_length(runner, tmp_path, with_pad):
    tokenizer = tmp_path / "tok"
    shutil.copytree(with_pad, tokenizer)
    config = json.loads((tokenizer / "tokenizer_config.json").read_text())
    (tokenizer / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 8}))
    path = tmp_path / "rows.parquet"
    pq.write_table(pad_rows(random_docs(2, 3), 12, PAD, "right"), path)
    result = _cli(runner, "inspect", str(path), "-t", str(tokenizer), "--json")
    assert result.exit_code == 0, result.output
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "model_context")
    assert check["status"] == "warn" and check["count"] == 3
    assert f"the model_max_length 8 of tokenizer {tokenizer}" in check["detail"]


def test_inspect_against_a_model_names_the_extra_without_torch(tmp_path, models) -> None:
    """Without torch, ``inspect --model`` says which extra to install, in one line."""
    from test_extras import _maskprep, _python

    pq.write_table(pad_rows(random_docs(3, 2), 12, PAD, "right"), tmp_path / "rows.parquet")
    done = _python(tmp_path, _maskprep("inspect", "rows.parquet", "--model", str(models["gpt2"])))
    assert done.stdout.strip().splitlines()[-1] == "exit 2"
    assert done.stderr == (
        "Error: checking rows against a model needs torch, which is not installed: "
        "pip install 'maskprep[verify]'\n"
    )
