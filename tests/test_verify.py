"""maskprep verify: correct data passes every probe; each planted defect is caught by its probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_config, write_jsonl
from rowkit import one_torch_thread, pack_rows, pad_rows, random_docs, tiny_config, write_output
from upstream import (
    BERT_MASKS_FROM_POSITION_IDS,
    DECODER_PACKS_LEAK_WITH_A_CACHE,
    bidirectional_mask_takes_position_ids,
    measured_fact,
)

from maskprep import VerifyOptions, verify
from maskprep.cli import main
from maskprep.output.names import MANIFEST_NAME
from maskprep.verifying.driver import verify_rows
from maskprep.verifying.model import load_model
from maskprep.verifying.probes import TOLERANCES

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch", reason="needs the verify extra (torch)")

PAD = 3

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
FAST = VerifyOptions(from_config=True, attn_implementations=("eager", "sdpa"), rows=4, longest=0)


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, Path]:
    """Tiny Llama, GPT-2 and BERT configs saved as local model directories."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for kind in ("llama", "gpt2", "bert"):
        tiny_config(kind).save_pretrained(root / kind)
        out[kind] = root / kind
    return out


@pytest.fixture(scope="module")
def padded_output(tmp_path_factory, with_pad, corpus) -> Path:
    """A real ``maskprep build`` (strategy pad, right padding) of the test corpus."""
    from maskprep import build

    root = tmp_path_factory.mktemp("padded")
    data = write_jsonl(root / "docs.jsonl", [{"text": t} for t in corpus])
    build(make_config([data], with_pad, root / "out", max_length=24))
    return root / "out"


@pytest.fixture(scope="module")
def packed_output(tmp_path_factory, with_pad, corpus) -> Path:
    """Packed rows of the tokenized corpus, two or three documents a row, padded tail."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(with_pad))
    docs = [tokenizer(t)["input_ids"] for t in corpus]
    rows = [docs[0:3], docs[3:5], docs[5:8]]
    width = max(sum(len(d) for d in r) for r in rows) + 2
    return write_output(
        tmp_path_factory.mktemp("packed") / "out", pack_rows(rows, width, PAD), PAD, "right"
    )


def _status(result, probe: str) -> set[str]:
    return {c.status for c in result.checks if c.probe == probe}


def _assert_all_pass(result, *, allowed_skips: set[str]) -> None:
    assert result.ok, [c for c in result.checks if c.status != "pass"]
    for check in result.checks:
        if check.probe == "padding_attended":
            assert check.status == "pass" and check.positions > 0, check
        elif check.status == "skipped":
            assert check.probe in allowed_skips, check
        else:
            assert check.status == "pass", check
            assert check.positions > 0 and check.max_diff is not None
            assert check.max_diff <= check.tolerance


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_correct_padded_data_passes(configs, padded_output, kind) -> None:
    result = verify(padded_output, configs[kind], FAST)
    skips = {"cross_document"} | ({"causal"} if kind == "bert" else set())
    _assert_all_pass(result, allowed_skips=skips)
    assert {c.attn_implementation for c in result.checks} == {"-", "eager", "sdpa"}
    assert result.kind == ("encoder" if kind == "bert" else "decoder")
    assert result.dtype == "float32" and result.device.startswith("cpu")
    assert len(result.rows) == 4


def test_arrow_shards_are_read_too(tmp_path, with_pad, corpus, configs) -> None:
    from maskprep import build

    data = write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in corpus])
    build(make_config([data], with_pad, tmp_path / "out", max_length=24, format="arrow"))
    options = VerifyOptions(from_config=True, attn_implementations=("sdpa",), rows=2, longest=1)
    result = verify(tmp_path / "out", configs["gpt2"], options)
    assert result.ok and len(result.rows) == 3 and len(result.longest) == 1


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_correct_packed_data_passes_and_its_controls_see_leaks(configs, packed_output, kind):
    result = verify(packed_output, configs[kind], FAST)
    _assert_all_pass(result, allowed_skips={"causal"} if kind == "bert" else set())
    forms = {c.form for c in result.checks} - {"-"}
    assert forms == ({"mask4d"} if kind == "bert" else {"mask4d", "position_ids"})
    for check in result.checks:
        if check.status != "skipped" and check.probe in ("cross_document", "unpadded_reference"):
            assert check.control_diff > check.tolerance, check


def test_real_minilm_passes_padded_and_packed(minilm, tmp_path, corpus) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm))
    docs = [tokenizer(t)["input_ids"] for t in corpus[:6]]
    options = VerifyOptions(attn_implementations=("eager", "sdpa"), rows=3, longest=0)
    pad_id = tokenizer.pad_token_id
    padded = write_output(
        tmp_path / "pad", pad_rows(docs[:3], 24, pad_id, "right"), pad_id, "right"
    )
    packed = write_output(
        tmp_path / "pack", pack_rows([docs[0:2], docs[2:4], docs[4:6]], 48, pad_id), pad_id, "right"
    )
    for output in (padded, packed):
        result = verify(output, minilm, options)
        _assert_all_pass(result, allowed_skips={"causal", "cross_document"})
        assert result.kind == "encoder"
    assert _status(result, "cross_document") == {"pass"}


class _DropMask(torch.nn.Module):
    """A broken training wrapper: it never passes the attention mask on."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def set_attn_implementation(self, name: str) -> None:
        self.inner.set_attn_implementation(name)

    def forward(self, **kwargs):
        kwargs.pop("attention_mask", None)
        return self.inner(**kwargs)


class _Bidirectional(_DropMask):
    """A broken wrapper that lets every token attend every other (no causal mask)."""

    def forward(self, **kwargs):
        ids = kwargs.get("input_ids", kwargs.get("inputs_embeds"))
        width = ids.shape[1]
        kwargs["attention_mask"] = torch.zeros(ids.shape[0], 1, width, width)
        return self.inner(**kwargs)


def _model(kind: str):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    torch.manual_seed(0)
    cls = AutoModelForMaskedLM if kind == "bert" else AutoModelForCausalLM
    return cls.from_config(tiny_config(kind))


def _pad_table(side: str = "right"):
    return pad_rows(random_docs(1, 4), 12, PAD, side)


def test_wrapper_dropping_the_mask_is_caught_by_pad_invariance() -> None:
    """Fed no position_ids, a wrapper that drops the mask leaks on every transformers version."""
    options = VerifyOptions(attn_implementations=("eager", "sdpa"), pad_position_ids=False)
    result = verify_rows(_pad_table(), _DropMask(_model("bert")), options, pad_id=PAD)
    assert _status(result, "pad_invariance") == {"LEAK"}
    assert _status(result, "causal") == {"skipped"}
    assert not result.ok
    leak = next(c for c in result.checks if c.probe == "pad_invariance")
    assert leak.max_diff > leak.tolerance and leak.worst_row in range(4)
    assert leak.leaking == 4  # every row is padded
    assert "attention mask is not applied" in leak.note
    # The same model unwrapped passes: the leak is the wrapper's.
    assert verify_rows(_pad_table(), _model("bert"), options, pad_id=PAD).ok


@pytest.mark.parametrize(
    "safer",
    [
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                not BERT_MASKS_FROM_POSITION_IDS, reason="transformers 5.25 and later"
            ),
            id="transformers>=5.25",
        ),
        pytest.param(
            False,
            marks=pytest.mark.skipif(
                BERT_MASKS_FROM_POSITION_IDS, reason="transformers before 5.25"
            ),
            id="transformers<5.25",
        ),
    ],
)
def test_wrapper_dropping_the_mask_of_a_feed_with_position_ids(safer) -> None:
    """What the collator feeds BERT (position_ids counted over real tokens): from transformers
    5.25 BERT builds its mask from them, so dropping the mask hides the padding all the same.
    Then the probe's planted leak (an all-ones mask, which the wrapper drops too) cannot get
    through either, and it says ``inconclusive`` (shown, not a failure), never ``pass``; before
    5.25 it is a leak."""
    options = VerifyOptions(attn_implementations=("sdpa",))
    result = verify_rows(_pad_table(), _DropMask(_model("bert")), options, pad_id=PAD)
    probe = next(c for c in result.checks if c.probe == "pad_invariance")
    if safer:
        assert probe.status == "inconclusive"
        assert probe.max_diff <= probe.tolerance and probe.control_diff <= probe.tolerance
        assert "planted leak did not move outputs" in probe.note
    else:
        assert probe.status == "LEAK" and probe.max_diff > probe.tolerance
        assert not result.ok


def test_labels_on_pads_are_caught_by_the_label_probe(tmp_path, configs) -> None:
    """Labels on the padding of one row of six: the label probes name that row."""
    table = pad_rows(random_docs(1, 6), 12, PAD, "right")
    rows = table.to_pylist()
    pairs = zip(rows[4]["input_ids"], rows[4]["attention_mask"], strict=True)
    rows[4]["labels"] = [t if m else PAD for t, m in pairs]
    import pyarrow as pa

    output = write_output(
        tmp_path / "out", pa.Table.from_pylist(rows, schema=table.schema), PAD, "right"
    )
    options = VerifyOptions(from_config=True, attn_implementations=("eager",), rows=6, longest=0)
    result = verify(output, configs["llama"], options)
    assert result.rows == (0, 1, 2, 3, 4, 5)
    assert _status(result, "labels_loss") == {"LEAK"}
    assert _status(result, "labels_gradient") == {"LEAK"}
    for probe in ("pad_invariance", "unpadded_reference", "causal"):
        assert _status(result, probe) == {"pass"}
    gradient = next(c for c in result.checks if c.probe == "labels_gradient")
    assert gradient.leaking == 1 and gradient.worst_row == 4
    assert gradient.positions == sum(12 - r["length"] for r in rows)
    loss = next(c for c in result.checks if c.probe == "labels_loss")
    assert loss.worst_row == 4 and loss.leaking == 1
    assert loss.fix == "labels" and "fix: labels must be IGNORE_INDEX at padding" in loss.note


def test_first_token_labelled_under_left_padding_is_a_label_leak() -> None:
    """With left padding a decoder predicts the first real token from a pad."""
    rows = _pad_table("left").to_pylist()
    for row in rows:
        first = row["attention_mask"].index(1)
        row["labels"][first] = row["input_ids"][first]
    import pyarrow as pa

    table = pa.Table.from_pylist(rows, schema=_pad_table().schema)
    options = VerifyOptions(attn_implementations=("eager",), pad_position_ids=True)
    result = verify_rows(table, _model("gpt2"), options, pad_id=PAD, padding_side="left")
    assert _status(result, "labels_loss") == {"LEAK"}
    assert _status(result, "unpadded_reference") == {"pass"}


def test_pack_fed_a_2d_mask_leaks_across_documents() -> None:
    table = pack_rows([random_docs(2, 3), random_docs(3, 2)], 26, PAD)
    options = VerifyOptions(attn_implementations=("eager", "sdpa"), pack_forms=("mask2d", "mask4d"))
    result = verify_rows(table, _model("llama"), options, pad_id=PAD)
    by_form = {}
    for check in result.checks:
        if check.probe == "cross_document":
            by_form.setdefault(check.form, set()).add(check.status)
    assert by_form == {"mask2d": {"LEAK"}, "mask4d": {"pass"}}
    leaks = [c for c in result.checks if c.probe == "cross_document" and c.status == "LEAK"]
    assert [c.leaking for c in leaks] == [2, 2]  # both rows, under eager and sdpa
    assert not result.ok


@measured_fact
def test_position_ids_form_notes_the_cache_trap() -> None:
    table = pack_rows([random_docs(2, 3)], 26, PAD)
    options = VerifyOptions(attn_implementations=("sdpa",), pack_forms=("position_ids",))
    result = verify_rows(table, _model("llama"), options, pad_id=PAD)
    check = next(c for c in result.checks if c.probe == "cross_document")
    assert check.status == "pass"
    noted = "without use_cache=False this feed leaks" in check.note
    assert noted == DECODER_PACKS_LEAK_WITH_A_CACHE


def test_left_padding_on_absolute_positions_is_fed_as_the_collator_feeds_it() -> None:
    """GPT-2 numbers positions from the padding unless given position_ids. verify feeds what
    the collator feeds this model (position_ids counted over real tokens), and shows the plain
    feed's leak as a note; fed without them, the leak is a LEAK that names its fix."""
    table = _pad_table("left")
    options = VerifyOptions(attn_implementations=("eager", "sdpa"))
    gpt2 = _model("gpt2")
    result = verify_rows(table, gpt2, options, pad_id=PAD, padding_side="left")
    assert result.ok, result.checks
    reference = [c for c in result.checks if c.probe == "unpadded_reference"]
    assert {c.status for c in reference} == {"pass"}
    assert all("fed without position_ids (as a plain collator" in c.note for c in reference)
    plain = VerifyOptions(attn_implementations=("eager", "sdpa"), pad_position_ids=False)
    result = verify_rows(table, gpt2, plain, pad_id=PAD, padding_side="left")
    assert _status(result, "unpadded_reference") == {"LEAK"}
    assert {c.leaking for c in result.checks if c.probe == "unpadded_reference"} == {4}
    assert _status(result, "pad_invariance") == {"pass"}
    leak = next(c for c in result.checks if c.status == "LEAK")
    assert leak.fix == "pad_position_ids"
    assert "fix: left padding shifts an absolute-position model's positions" in leak.note
    assert "Collator(pad_position_ids=True)" in leak.note
    # Llama's rotary positions are relative: the shift left padding causes changes nothing.
    llama = verify_rows(table, _model("llama"), plain, pad_id=PAD, padding_side="left")
    assert llama.ok
    assert not any("fed without position_ids" in c.note for c in llama.checks)


def test_non_causal_decoder_is_caught_by_the_causal_probe() -> None:
    options = VerifyOptions(attn_implementations=("eager",))
    table = pack_rows([random_docs(4, 2)], 20, PAD)
    result = verify_rows(table, _Bidirectional(_model("llama")), options, pad_id=PAD)
    assert _status(result, "causal") == {"LEAK"}


def test_a_probe_blind_to_its_planted_leak_is_inconclusive() -> None:
    """With attention's output zeroed, no mask matters: the probes must not claim a pass."""
    model = _model("llama")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
    table = pack_rows([random_docs(5, 3), random_docs(6, 2)], 26, PAD)
    options = VerifyOptions(attn_implementations=("eager",))
    result = verify_rows(table, model, options, pad_id=PAD)
    for probe in ("cross_document", "causal", "unpadded_reference"):
        assert _status(result, probe) == {"inconclusive"}, probe
    assert result.ok  # inconclusive is not a leak


def test_bfloat16_uses_its_own_tolerance(packed_output, configs) -> None:
    options = VerifyOptions(
        from_config=True, dtype="bfloat16", attn_implementations=("sdpa",), rows=2
    )
    result = verify(packed_output, configs["llama"], options)
    assert result.dtype == "bfloat16" and result.ok
    atol, _ = TOLERANCES["bfloat16"]
    check = next(c for c in result.checks if c.probe == "pad_invariance")
    assert check.tolerance >= atol > TOLERANCES["float32"][0]


def test_num_layers_cuts_a_model_built_from_config(configs) -> None:
    subject = load_model(
        str(configs["llama"]), VerifyOptions(from_config=True, num_layers=1), "float32", "cpu"
    )
    assert subject.kind == "decoder" and len(subject.module.model.layers) == 1


def _cli(runner, *args: str):
    return runner.invoke(main, ["verify", *args])


def test_cli_json_reports_checks_and_skipped_implementations(runner, configs, padded_output):
    result = _cli(
        runner,
        str(padded_output),
        "--model",
        str(configs["llama"]),
        "--from-config",
        "--rows",
        "3",
        "--attn-implementation",
        "sdpa,flash_attention_2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["warnings"] == [] and data["reach"] == 24 and len(data["longest"]) == 2
    assert data["ok"] is True and data["dtype"] == "float32" and data["device"].startswith("cpu")
    flash = [c for c in data["checks"] if c["attn_implementation"] == "flash_attention_2"]
    assert flash == [
        {
            "probe": "all",
            "attn_implementation": "flash_attention_2",
            "form": "-",
            "status": "skipped",
            "max_diff": None,
            "tolerance": None,
            "positions": 0,
            "worst_row": None,
            "control_diff": None,
            "leaking": 0,
            "note": "flash_attention_2 needs a CUDA device",
            "elapsed_s": 0.0,
            "fix": "",
        }
    ]
    probes = {c["probe"] for c in data["checks"] if c["status"] == "pass"}
    assert probes == {
        "padding_attended",
        "pad_invariance",
        "unpadded_reference",
        "labels_loss",
        "labels_gradient",
        "causal",
    }


def test_cli_exits_1_on_a_leak_and_names_the_option_that_fixes_it(runner, configs, tmp_path):
    output = write_output(tmp_path / "left", _pad_table("left"), PAD, "left")
    args = [str(output), "-m", str(configs["gpt2"]), "--from-config", "--attn-implementation"]
    result = _cli(runner, *args, "eager", "--no-pad-position-ids")
    assert result.exit_code == 1, result.output
    assert "LEAK FOUND" in result.stdout and "unpadded_reference" in result.stdout
    assert "fix to try: maskprep verify ... --pad-position-ids" in result.stdout
    fixed = _cli(runner, *args, "eager", "--pad-position-ids")
    assert fixed.exit_code == 0, fixed.output
    assert "no leak found" in fixed.stdout
    # By default verify feeds what the collator feeds GPT-2: position_ids, no leak.
    assert _cli(runner, *args, "eager").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attn-implementation", "eager,flash"], "flash: choose from eager, sdpa"),
        (["--num-layers", "1"], "num_layers only applies to a model built from its config"),
        (["--from-config", "--device", "cuda"], "device cuda asked for, but torch sees no CUDA"),
        (["--from-config", "--pack-forms", "mask3d"], "mask3d: choose from position_ids"),
    ],
)
def test_cli_usage_errors_exit_2(runner, configs, padded_output, args, message) -> None:
    if torch.cuda.is_available() and "cuda" in args:
        pytest.skip("a CUDA device is present")
    result = _cli(runner, str(padded_output), "-m", str(configs["llama"]), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_unfinished_output_exits_1(runner, configs, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    result = _cli(runner, str(tmp_path / "empty"), "-m", str(configs["llama"]), "--from-config")
    assert result.exit_code == 1
    assert f"no {MANIFEST_NAME}; the build did not finish, or this is not a data" in result.output
    # Shards beside a temporary file: a build is running, or died, here.
    half = write_output(tmp_path / "half", _pad_table(), PAD, "right")
    (half / MANIFEST_NAME).unlink()
    (half / ".tmp-data-00001.parquet").write_bytes(b"")
    result = _cli(runner, str(half), "-m", str(configs["llama"]), "--from-config")
    assert result.exit_code == 1
    assert f"no {MANIFEST_NAME}; the build did not finish (a build is running" in result.output


def test_cli_model_that_cannot_load_exits_2(runner, padded_output, tmp_path) -> None:
    # A missing local path says so (#14) rather than what the Hub would say of the name.
    result = _cli(runner, str(padded_output), "-m", str(tmp_path / "nowhere"), "--from-config")
    where = tmp_path / "nowhere"
    assert (result.exit_code, result.output) == (
        2,
        f"Error: {where}: no such directory (a local model is a directory; a Hub name is "
        "'name' or 'namespace/name')\n",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _cli(runner, str(padded_output), "-m", str(empty), "--from-config")
    assert result.exit_code == 2
    assert "cannot load the model config" in result.output


def test_python_m_maskprep_verify_in_a_subprocess(configs, padded_output, monkeypatch) -> None:
    from conftest import run_maskprep

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # run_maskprep passes the environment on
    done = run_maskprep(
        "verify", str(padded_output), "-m", str(configs["bert"]), "--from-config",
        "--attn-implementation", "sdpa", "--rows", "2", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    data = json.loads(done.stdout)
    assert data["ok"] is True and data["kind"] == "encoder"


def test_rows_of_unequal_length_are_padded_per_batch_and_pass() -> None:
    """Strategy ``none``: no padding in the shards; the collator pads each batch."""
    import pyarrow as pa

    from maskprep.columns import schema

    docs = random_docs(8, 4)
    rows = [
        {"input_ids": d, "attention_mask": [1] * len(d), "labels": d, "length": len(d)}
        for d in docs
    ]
    table = pa.Table.from_pylist(rows, schema=schema())
    options = VerifyOptions(attn_implementations=("eager",))
    result = verify_rows(table, _model("gpt2"), options, pad_id=PAD)
    _assert_all_pass(result, allowed_skips={"cross_document"})
    gradient = next(c for c in result.checks if c.probe == "labels_gradient")
    longest = max(len(d) for d in docs)
    assert gradient.positions == sum(longest - len(d) for d in docs)


def test_encoder_packs_fed_position_ids_follow_the_transformers_version() -> None:
    """mask4d keeps BERT's packed documents apart on every version; position_ids alone do from
    transformers 5.25 on (BERT builds the block mask from them), and leak before."""
    table = pack_rows([random_docs(2, 3)], 26, PAD)
    options = VerifyOptions(attn_implementations=("sdpa",), pack_forms=("position_ids", "mask4d"))
    result = verify_rows(table, _model("bert"), options, pad_id=PAD)
    checks = {c.form: c for c in result.checks if c.probe == "cross_document"}
    expected = "pass" if BERT_MASKS_FROM_POSITION_IDS else "LEAK"
    assert {form: c.status for form, c in checks.items()} == {
        "position_ids": expected,
        "mask4d": "pass",
    }
    # Either way the probe saw its planted leak (the pack fed its 2D mask).
    assert all(c.control_diff > c.tolerance for c in checks.values())
    if expected == "LEAK":
        assert "does not keep packed documents apart by their position_ids" in (
            checks["position_ids"].note
        )


def test_the_version_gate_names_what_the_installed_code_does() -> None:
    """The gate above is the installed code's own signature, not a guess about releases."""
    assert bidirectional_mask_takes_position_ids() == BERT_MASKS_FROM_POSITION_IDS


def test_token_ids_outside_the_model_vocabulary_are_a_data_error(configs, tmp_path) -> None:
    from maskprep import DataError

    table = pad_rows([[5, 6, 7], [8, 450, 9]], 6, PAD, "right")
    output = write_output(tmp_path / "out", table, PAD, "right")
    with pytest.raises(DataError, match=r"row 1: token id 450 is outside the 300-id vocabulary"):
        verify(output, configs["llama"], VerifyOptions(from_config=True, rows=2))
