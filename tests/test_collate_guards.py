"""maskprep.collate cannot be fooled: packs recognised from position_ids alone, every careless feed
refused with a one-line error naming the fix, and options read from the output and the model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from conftest import make_config, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st
from rowkit import one_torch_thread, pack_rows, pad_rows, tiny_config, write_output

from maskprep import build, columns
from maskprep.collate import (
    COLLATE_COLUMNS,
    Collator,
    ModelFacts,
    collate,
    for_model,
    for_output,
    model_facts,
    model_task,
    row_arrays,
)
from maskprep.columns import IGNORE_INDEX
from maskprep.errors import ConfigError, DataError, ManifestError, MaskprepError
from maskprep.output.names import MANIFEST_NAME

torch = pytest.importorskip("torch", reason="needs torch (the verify extra)")

A, B, C = [10, 11, 12], [20, 21], [30, 31, 32, 33]
PAD = 3

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def _without(table: pa.Table, *names: str) -> list[dict]:
    """Rows as a trainer hands them over after dropping ``names``."""
    return [{k: v for k, v in row.items() if k not in names} for row in table.to_pylist()]


def _allowed(mask: torch.Tensor) -> list[list[int]]:
    return (mask[0, 0] == 0).int().tolist()


# --------------------------------------------------------------------------- packs without seq_lens


def test_packs_are_recognised_from_position_ids_when_seq_lens_is_gone() -> None:
    table = pack_rows([[A, B], [C, [40]]], 7, PAD)
    for form in ("mask4d", "position_ids"):
        full = collate(table, form=form)
        dropped = collate(_without(table, "seq_lens", "length"), form=form)
        assert set(full) == set(dropped)
        for key in full:
            assert torch.equal(torch.as_tensor(full[key]), torch.as_tensor(dropped[key])), key
    assert _allowed(collate(_without(table, "seq_lens"), form="mask4d")["attention_mask"]) == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
    ]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(1, 6), min_size=1, max_size=4),  # document lengths of a row
        min_size=1,
        max_size=3,
    ),
    st.integers(0, 3),
)
def test_position_ids_give_the_documents_seq_lens_give(rows_of_lengths, extra) -> None:
    rng = np.random.default_rng(sum(map(sum, rows_of_lengths)))
    rows = [[rng.integers(4, 99, n).tolist() for n in lengths] for lengths in rows_of_lengths]
    width = max(sum(lengths) for lengths in rows_of_lengths) + extra
    table = pack_rows(rows, width, PAD)
    with_both = row_arrays(table)
    positions_only = row_arrays(_without(table, "seq_lens"))
    seq_lens_only = row_arrays(_without(table, "position_ids"))
    assert np.array_equal(with_both.segments, positions_only.segments)
    assert np.array_equal(with_both.segments, seq_lens_only.segments)
    assert np.array_equal(with_both.position_ids, positions_only.position_ids)


def test_seq_lens_that_disagree_with_position_ids_are_an_error() -> None:
    row = pack_rows([[A, B]], 6, PAD).to_pylist()[0]
    row["seq_lens"] = [2, 3]
    with pytest.raises(
        DataError,
        match=r"^row 0: seq_lens \[2, 3\] disagree with position_ids, which restart at 0 at "
        r"positions \[0, 3\]$",
    ):
        collate([row])


def test_position_ids_that_do_not_start_at_zero_are_refused() -> None:
    """e.g. rows whose positions already carry RoBERTa's offset."""
    rows = _without(pack_rows([[A, B]], 6, PAD), "seq_lens")
    rows[0]["position_ids"] = [p + 2 for p in rows[0]["position_ids"]]
    with pytest.raises(DataError, match=r"^row 0: position_ids start at 2, not 0, at the first"):
        collate(rows)


def test_position_ids_that_skip_are_refused() -> None:
    rows = _without(pack_rows([[A, B]], 6, PAD), "seq_lens")
    rows[0]["position_ids"] = [0, 1, 3, 0, 1, 0]
    with pytest.raises(
        DataError, match=r"^row 0: position_ids hold 3 at position 2 where 2 belongs"
    ):
        collate(rows)


def test_packed_rows_that_cannot_be_split_are_refused_with_the_fix() -> None:
    rows = _without(pack_rows([[A, B]], 6, PAD), "seq_lens", "position_ids", "length")
    with pytest.raises(DataError) as error:
        Collator(packed=True)(rows)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("packed rows arrived without seq_lens and position_ids")
    assert "remove_unused_columns=False" in message and "COLLATE_COLUMNS" in message
    # Told nothing, the collator cannot know: it feeds them as padded rows, which leaks.
    assert collate(rows)["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0]]


def test_the_columns_to_keep_are_the_ones_read() -> None:
    assert set(COLLATE_COLUMNS) == {"input_ids", "attention_mask", "labels"} | set(
        columns.PACK_COLUMNS
    )


def test_rows_without_a_mask_are_refused_with_the_fix() -> None:
    """TRL's SFTTrainer keeps only input_ids and labels by default."""
    rows = _without(pad_rows([A], 4, PAD, "right"), "attention_mask")
    with pytest.raises(DataError, match=r"^rows have no 'attention_mask' column; keep them: "):
        Collator(pad_id=PAD)(rows)


def test_packed_rows_fed_to_a_padded_collator_are_refused() -> None:
    with pytest.raises(DataError, match=r"set up for padded rows .*rows of another output\?"):
        Collator(packed=False)(pack_rows([[A, B]], 6, PAD))


# --------------------------------------------------------------------------- mixed and odd batches


def test_rows_of_two_outputs_in_one_batch_are_refused() -> None:
    packed = pack_rows([[A, B]], 6, PAD).to_pylist()[0]
    padded = pad_rows([A], 6, PAD, "right").to_pylist()[0]
    with pytest.raises(DataError, match=r"^row 1 has the columns input_ids, attention_mask, "):
        collate([packed, padded])
    other_pad = pad_rows([B], 6, 0, "right").to_pylist()[0]
    with pytest.raises(DataError, match=r"padding holds the ids 0, 3: rows of outputs with"):
        collate([padded, other_pad])


def test_padding_that_contradicts_the_pad_id_is_refused() -> None:
    rows = pad_rows([A, B], 5, PAD, "right")
    with pytest.raises(DataError, match=r"^the rows are padded with id 3, but pad_id is 0"):
        Collator(pad_id=0)(rows)
    assert collate(rows, pad_id=PAD)["input_ids"].tolist() == [[*A, PAD, PAD], [*B, PAD, PAD, PAD]]


def test_the_pad_id_is_read_from_the_rows_own_padding() -> None:
    """Buckets of 4 and 6 padded with 7: the collator pads the short one with 7 too."""
    rows = pad_rows([A], 4, 7, "right").to_pylist() + pad_rows([C], 6, 7, "right").to_pylist()
    out = Collator()(rows)
    assert out["input_ids"].tolist() == [[*A, 7, 7, 7], [*C, 7, 7]]


def test_padding_sides_are_read_checked_and_never_mixed() -> None:
    left = pad_rows([A], 4, PAD, "left").to_pylist() + pad_rows([C], 6, PAD, "left").to_pylist()
    assert Collator()(left)["input_ids"].tolist() == [[PAD, PAD, PAD, *A], [PAD, PAD, *C]]
    with pytest.raises(
        DataError, match=r"^row 0 is padded on the left, but padding_side is 'right'"
    ):
        Collator(padding_side="right")(left)
    mixed = pad_rows([A], 4, PAD, "left").to_pylist() + pad_rows([C], 6, PAD, "right").to_pylist()
    with pytest.raises(DataError, match=r"^row 0 is padded on the left and row 1 on the right"):
        Collator()(mixed)
    both = [{"input_ids": [PAD, *A, PAD], "attention_mask": [0, 1, 1, 1, 0], "labels": [-100] * 5}]
    with pytest.raises(DataError, match=r"^row 0 is padded on both sides$"):
        Collator()(both)
    gap = [{"input_ids": [*A, PAD, 5], "attention_mask": [1, 1, 1, 0, 1], "labels": [-100] * 5}]
    with pytest.raises(DataError, match=r"^row 0: real tokens are not one contiguous run$"):
        Collator()(gap)


def test_rows_with_no_real_token_or_a_wrong_length_are_refused() -> None:
    empty = [{"input_ids": [PAD, PAD], "attention_mask": [0, 0], "labels": [-100, -100]}]
    with pytest.raises(DataError, match=r"^row 0 has no real tokens$"):
        collate(empty)
    row = pad_rows([A], 5, PAD, "right").to_pylist()[0]
    row["length"] = 5
    with pytest.raises(DataError, match=r"^row 0: length is 5 but the row has 3 real tokens$"):
        collate([row])
    row = pad_rows([A], 5, PAD, "right").to_pylist()[0]
    row["attention_mask"] = [1, 2, 1, 0, 0]
    with pytest.raises(DataError, match=r"^row 0: attention_mask is not 0/1$"):
        collate([row])


def test_a_dict_of_columns_is_a_batch_too() -> None:
    table = pack_rows([[A, B], [C]], 6, PAD)
    batch = table.to_pydict()
    assert torch.equal(
        collate(batch, form="mask4d")["attention_mask"],
        collate(table, form="mask4d")["attention_mask"],
    )


# --------------------------------------------------------------------------- pad id for `none`


@pytest.fixture(scope="module")
def none_output(tmp_path_factory, llama_like, corpus):
    """``--strategy none`` rows (unequal, unpadded) whose pad id is EOS, 2."""
    root = tmp_path_factory.mktemp("none")
    data = write_jsonl(root / "docs.jsonl", [{"text": t} for t in corpus])
    build(make_config([data], llama_like, root / "out", strategy="none", pad_token="eos"))
    return root / "out"


def test_none_output_is_padded_with_its_own_pad_id(none_output) -> None:
    import maskprep

    assert maskprep.read_manifest(none_output).tokenizer.pad_token_id == 2
    rows = maskprep.load_dataset(none_output).select(range(4)).to_list()
    assert len({len(r["input_ids"]) for r in rows}) > 1
    with pytest.raises(DataError) as error:
        Collator()(rows)
    assert "no pad id is known" in str(error.value)
    assert "Collator.for_output(DIR)" in str(error.value) and "\n" not in str(error.value)
    out = Collator.for_output(none_output)(rows)
    padded = out["attention_mask"] == 0
    assert padded.any() and set(out["input_ids"][padded].tolist()) == {2}
    assert set(out["labels"][padded].tolist()) == {IGNORE_INDEX}
    assert torch.equal(Collator(pad_id=2)(rows)["input_ids"], out["input_ids"])


# --------------------------------------------------------------------------- labels


def test_shifted_labels_are_refused_by_the_collator_but_not_by_bare_collate() -> None:
    rows = pad_rows([A + B], 6, PAD, "right").to_pylist()
    rows[0]["labels"] = [*rows[0]["input_ids"][1:5], IGNORE_INDEX, IGNORE_INDEX]
    with pytest.raises(
        DataError, match=r"^row 0: label 11 at position 0 is neither -100 nor .* shifted"
    ):
        Collator()(rows)
    # verify feeds faulty rows through collate on purpose, to see its probes catch them.
    assert collate(rows)["labels"].tolist() == [rows[0]["labels"]]


def test_labels_on_padding_are_refused() -> None:
    rows = pad_rows([A], 5, PAD, "right").to_pylist()
    rows[0]["labels"][4] = PAD
    with pytest.raises(DataError, match=r"^row 0: label 3 on padding at position 4"):
        Collator()(rows)


def test_a_trained_document_start_is_refused_for_decoders_only() -> None:
    rows = pack_rows([[A, B]], 6, PAD).to_pylist()
    rows[0]["labels"][3] = B[0]
    with pytest.raises(DataError, match=r"^row 0: the token at position 3 starts a document"):
        Collator()(rows)
    # An encoder predicts each position from itself: nothing crosses a document there.
    assert Collator(causal=False, form="mask4d")(rows)["labels"][0, 3] == B[0]


def test_left_padding_with_a_trained_first_token_is_refused_unless_the_collator_padded_it() -> None:
    rows = pad_rows([A], 5, PAD, "left").to_pylist()
    rows[0]["labels"][2] = A[0]
    with pytest.raises(DataError, match=r"^row 0: the token at position 2 starts a document"):
        Collator()(rows)
    grown = [
        {"input_ids": A, "attention_mask": [1, 1, 1], "labels": A},
        {"input_ids": [*A, 9], "attention_mask": [1] * 4, "labels": [*A, 9]},
    ]
    assert Collator(pad_id=PAD, padding_side="left")(grown)["labels"].tolist()[0] == [
        -100,
        -100,
        11,
        12,
    ]


def test_left_padded_packs_keep_their_documents_apart() -> None:
    """Packs padded at the front (built elsewhere): documents come from real positions."""
    row = {
        "input_ids": [PAD, PAD, *A, *B],
        "attention_mask": [0, 0, 1, 1, 1, 1, 1],
        "labels": [-100, -100, -100, 11, 12, -100, 21],
        "position_ids": [0, 0, 0, 1, 2, 0, 1],
    }
    out = Collator(form="mask4d")([row])
    assert out["position_ids"].tolist() == [[0, 0, 0, 1, 2, 0, 1]]
    assert _allowed(out["attention_mask"]) == [
        [1, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1, 1],
    ]


def test_padded_rows_given_position_ids_are_one_document_or_refused() -> None:
    right = pad_rows([A], 5, PAD, "right").to_pylist()
    right[0]["position_ids"] = [0, 1, 2, 3, 4]  # counted on over the padding: harmless
    out = Collator(form="mask4d")(right)
    assert _allowed(out["attention_mask"])[:3] == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
    ]
    left = pad_rows([A], 5, PAD, "left").to_pylist()
    left[0]["position_ids"] = [0, 1, 2, 3, 4]  # counted from the padding: an absolute model drifts
    with pytest.raises(DataError, match=r"^row 0: position_ids start at 2, not 0"):
        Collator()(left)


# --------------------------------------------------------------------------- forms


def test_encoders_are_refused_the_position_ids_form_on_packs() -> None:
    table = pack_rows([[A, B]], 6, PAD)
    with pytest.raises(
        ConfigError, match=r"^packed rows for an encoder \(causal=False\) need form='mask4d'"
    ):
        Collator(causal=False)(table)
    assert "attention_mask" in Collator(causal=False)(pad_rows([A], 4, PAD, "right"))
    # Bare collate still emits it: verify probes it to show BERT leaking that way.
    assert "attention_mask" not in collate(table, causal=False)


def test_the_leaky_2d_form_is_only_emitted_by_name(tmp_path) -> None:
    table = pack_rows([[A, B]], 6, PAD)
    output = write_output(tmp_path / "pack", table, PAD, "right")
    _mark_packed(output)
    assert Collator()(table).get("attention_mask") is None
    for kind in ("llama", "bert"):
        collator = for_output(output, model=tiny_config(kind))
        assert collator.form == "mask4d"
        assert collator(table)["attention_mask"].dim() == 4
    named = for_output(output, model=tiny_config("llama"), form="mask2d")(table)
    assert named["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0]]


def test_collator_options_are_checked_as_programming_errors() -> None:
    """Options come from the caller's code: a wrong one raises what Python raises for a wrong
    argument (ValueError, TypeError), never a maskprep error that reads as a data problem."""
    forms = "position_ids, mask4d, mask2d"
    cases = [
        (ValueError, rf"^form must be one of {forms}, not 'flat'$", {"form": "flat"}),
        (ValueError, r"^dtype must be a floating-point torch dtype, not 'int8'", {"dtype": "int8"}),
        (ValueError, r"^padding_side must be left or right, not 'up'$", {"padding_side": "up"}),
        (ValueError, r"^pad_id: -1 is not a token id \(0 to 2147483647\)$", {"pad_id": -1}),
        (ValueError, r"^pad_id: 2147483648 is not a token id", {"pad_id": 2**31}),
        (TypeError, r"^pad_id: '3' is not a token id", {"pad_id": "3"}),
        (ValueError, r"^position_offset must be 0 to 2147483647, not -1$", {"position_offset": -1}),
        (
            ValueError,
            r"^position_offset must be 0 to 2147483647, not 1000",
            {"position_offset": 10**30},
        ),
        (ValueError, r"^vocab_size must be at least 1, not 0$", {"vocab_size": 0}),
        # A wrong type was taken as it came (causal="no" is true) or failed later as data.
        (TypeError, r"^vocab_size must be an integer, not 1.5$", {"vocab_size": 1.5}),
        (TypeError, r"^max_positions must be an integer, not '7'$", {"max_positions": "7"}),
        (TypeError, r"^causal must be True or False, not 'no'$", {"causal": "no"}),
        (TypeError, r"^packed must be True or False, not 'yes'$", {"packed": "yes"}),
        (TypeError, r"^check_labels must be True or False, not 0$", {"check_labels": 0}),
    ]
    for kind, message, options in cases:
        with pytest.raises(kind, match=message) as raised:
            Collator(**options)  # type: ignore[arg-type]
        assert not isinstance(raised.value, MaskprepError), options
    with pytest.raises(ValueError, match=r"^padding_side must be left or right, not 'up'$"):
        row_arrays(pad_rows([A], 4, PAD, "right"), padding_side="up")  # type: ignore[arg-type]
    assert Collator(dtype=torch.bfloat16).dtype == "bfloat16"
    assert Collator(pad_id=2**31 - 1).pad_id == 2**31 - 1  # the largest id is fine


def test_a_manifest_pad_id_that_is_no_token_id_is_a_manifest_error(built, tmp_path) -> None:
    """The pad id for_output takes from the data is checked as data."""
    out = tmp_path / "out"
    shutil.copytree(built["pad"], out)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["tokenizer"]["pad_token_id"] = -7
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"tokenizer.pad_token_id: -7 is not a token id"):
        for_output(out, model=tiny_config("llama"))


# --------------------------------------------------------------------------- for_output


def _mark_packed(output) -> None:
    path = output / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["config"]["shape"]["strategy"] = "pack"
    path.write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def built(tmp_path_factory, with_pad, corpus) -> dict:
    """Real pad (left padding), pack and bucket outputs; pad id 3."""
    root = tmp_path_factory.mktemp("built")
    data = write_jsonl(root / "docs.jsonl", [{"text": t} for t in corpus])
    out = {}
    for strategy, side in (("pad", "left"), ("pack", None), ("bucket", "right")):
        extra = {"padding_side": side} if side else {}
        build(make_config([data], with_pad, root / strategy, strategy=strategy, **extra))
        out[strategy] = root / strategy
    return out


def test_for_output_reads_the_manifest(built) -> None:
    pad = for_output(built["pad"])
    assert (pad.pad_id, pad.padding_side, pad.packed, pad.causal) == (PAD, "left", False, True)
    bucket = Collator.for_output(built["bucket"])
    assert (bucket.pad_id, bucket.padding_side, bucket.packed) == (PAD, "right", False)
    pack = for_output(built["pack"], causal=True)
    assert (pack.pad_id, pack.padding_side, pack.packed, pack.form) == (PAD, None, True, "mask4d")


def test_for_output_of_a_pack_without_the_model_refuses_to_guess(built) -> None:
    """Causal blocks fed to an encoder were the guess this refuses (issue #21: 7.3 on MiniLM)."""
    with pytest.raises(ValueError, match=r"holds packed rows.*give model=.*causal=False") as error:
        for_output(built["pack"])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"holds packed rows"):
        Collator.for_output(built["pack"], form="mask4d")
    with pytest.raises(ValueError, match=r"^the rows holds packed rows"):
        for_model(packed=True)
    collator = for_output(built["pack"], causal=True)
    assert (collator.causal, collator.form) == (True, "mask4d")
    allowed = _allowed(collator(maskprep_rows(built["pack"], 1))["attention_mask"])
    assert allowed[0][1] == 0 and allowed[1][0] == 1  # causal blocks
    encoder = for_output(built["pack"], causal=False)
    allowed = _allowed(encoder(maskprep_rows(built["pack"], 1))["attention_mask"])
    assert allowed[0][1] == 1 and allowed[1][0] == 1  # full blocks
    # Padded outputs need no model: their mask is the same for decoders and encoders.
    assert for_output(built["pad"]).causal is True


def test_for_output_takes_the_form_and_limits_from_the_model(built, tmp_path) -> None:
    from transformers import BertForMaskedLM, LlamaForCausalLM

    llama = LlamaForCausalLM(tiny_config("llama")).to(torch.bfloat16)
    collator = for_output(built["pack"], model=llama)
    assert (collator.causal, collator.form, collator.dtype) == (True, "mask4d", "bfloat16")
    assert collator.max_positions is None and collator.vocab_size == 300
    rows = maskprep_rows(built["pack"], 2)
    assert collator(rows)["attention_mask"].dtype == torch.bfloat16

    bert = BertForMaskedLM(tiny_config("bert"))
    collator = for_output(built["pack"], model=bert)
    assert (collator.causal, collator.form, collator.max_positions) == (False, "mask4d", 128)
    assert collator.pad_position_ids and collator.position_offset == 0
    # The same from the config alone, and from a model directory holding only the config.
    tiny_config("bert").save_pretrained(tmp_path / "bert")
    for model in (tiny_config("bert"), tmp_path / "bert", str(tmp_path / "bert")):
        assert for_output(built["pack"], model=model) == collator


def test_a_config_no_module_can_be_built_from_still_gives_its_vocabulary() -> None:
    from transformers import PretrainedConfig

    class Unregistered(PretrainedConfig):
        model_type = "maskprep-unregistered"

    # transformers cannot build this one (remote code not here): the config's own size is used.
    assert model_facts(Unregistered(vocab_size=77)).vocab_size == 77
    assert model_facts(Unregistered()).vocab_size is None  # none said: no limit invented
    # Where a module is built, its embedding table is read (the same size for a plain config).
    assert model_facts(tiny_config("bert")).vocab_size == tiny_config("bert").vocab_size


def test_model_facts_read_the_structure() -> None:
    from transformers import RobertaConfig

    roberta = RobertaConfig(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=1,
    )
    facts = model_facts(roberta)
    assert (facts.causal, facts.position_offset, facts.max_positions) == (False, 2, 514)
    assert model_facts(tiny_config("gpt2")).max_positions == 128
    assert model_facts(tiny_config("gpt2")).causal
    llama = model_facts(tiny_config("llama"))
    assert (llama.causal, llama.max_positions, llama.attn_implementation) == (True, None, "sdpa")


def test_flash_attention_decoders_get_the_position_ids_form(built) -> None:
    config = tiny_config("llama")
    config._attn_implementation = "flash_attention_2"
    collator = for_output(built["pack"], model=config)
    assert collator.form == "position_ids"
    with pytest.raises(ValueError, match=r"^flash_attention_2 takes no 4D mask"):
        for_output(built["pack"], model=config, form="mask4d")


def test_for_output_refuses_forms_that_leak(built, monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"^packed rows for an encoder need form='mask4d'"):
        for_output(built["pack"], model=tiny_config("bert"), form="position_ids")
    assert (
        for_output(built["pack"], model=tiny_config("llama"), form="position_ids").form
        == "position_ids"
    )
    from transformers import masking_utils

    monkeypatch.delattr(masking_utils, "find_packed_sequence_indices")
    with pytest.raises(ValueError, match=r"builds no block-diagonal mask from position_ids"):
        for_output(built["pack"], model=tiny_config("llama"), form="position_ids")


def test_for_output_refuses_what_the_model_cannot_take(built) -> None:
    with pytest.raises(TypeError, match=r"unknown collator option\(s\): padding$"):
        for_output(built["pad"], padding="left")
    small = tiny_config("llama", vocab_size=100)
    with pytest.raises(
        ConfigError, match=r"tokenized with a 300-id vocabulary, but .* embeds 100 ids"
    ):
        for_output(built["pad"], model=small)
    from transformers import T5Config

    with pytest.raises(ConfigError, match=r"^t5: encoder-decoder models are not supported$"):
        for_output(built["pad"], model=T5Config(vocab_size=300, d_model=32, num_layers=1))
    with pytest.raises(TypeError, match=r"^model must be a model, its config or its name"):
        for_output(built["pad"], model=42)


def test_rows_beyond_the_model_are_refused_before_the_forward() -> None:
    long_doc = list(range(4, 204))
    rows = pad_rows([long_doc], 200, PAD, "right")
    bert = Collator(causal=False, form="mask4d", max_positions=128, pad_position_ids=True)
    with pytest.raises(
        DataError, match=r"^row 0 needs position 199, but the model has 128 position"
    ):
        bert(rows)
    with pytest.raises(DataError, match=r"^row 0 needs position 199"):
        Collator(max_positions=128)(rows)  # the model would number positions itself
    # A long pack of short documents needs only the longest document's positions.
    pack = pack_rows([[A, B], [C]], 200, PAD)
    assert bert(pack)["position_ids"].max() == 3
    with pytest.raises(
        DataError, match=r"^row 0: token id 150 is outside the model's 150-id vocabulary"
    ):
        Collator(vocab_size=150)(rows)


def test_model_facts_of_a_model_object_is_what_for_output_uses() -> None:
    from transformers import LlamaForCausalLM

    facts = model_facts(LlamaForCausalLM(tiny_config("llama")))
    assert facts == ModelFacts(
        name=facts.name,
        causal=True,
        dtype="float32",
        attn_implementation="sdpa",
        vocab_size=300,
        context_positions=128,  # rotary: no table, the config's context length
    )


def maskprep_rows(output, count: int) -> list[dict]:
    import maskprep

    return maskprep.load_dataset(output).select(range(count)).to_list()


def test_a_collator_pickles_into_dataloader_workers(built) -> None:
    import pickle

    collator = for_output(built["pack"], model=tiny_config("llama"))
    assert pickle.loads(pickle.dumps(collator)) == collator


def test_a_model_that_says_nothing_leaves_causal_to_the_caller(built) -> None:
    """A plain torch module: no config, no attention module with is_causal."""
    module = torch.nn.Sequential(torch.nn.Embedding(300, 8), torch.nn.Linear(8, 300))
    assert model_facts(module).causal is None
    with pytest.raises(ValueError, match=r"holds packed rows.*the model is not known"):
        for_output(built["pack"], model=module)
    with pytest.warns(UserWarning, match=r"the model is not known"):
        assert for_model(module).causal is True
    collator = for_output(built["pack"], model=module, causal=False)
    assert (collator.causal, collator.form, collator.vocab_size) == (False, "mask4d", None)


def test_for_model_sets_up_what_for_output_does_for_rows_without_a_manifest(built) -> None:
    for output, kind in ((built["pack"], "llama"), (built["pack"], "bert"), (built["pad"], "gpt2")):
        expected = for_output(output, model=tiny_config(kind))
        facts = model_facts(tiny_config(kind))
        given = {"pad_id": expected.pad_id, "padding_side": expected.padding_side}
        assert for_model(facts, **given, packed=expected.packed) == expected
        assert Collator.for_model(tiny_config(kind), **given, packed=expected.packed) == expected
    with pytest.raises(TypeError, match=r"^unknown collator option\(s\): padding$"):
        for_model(padding="left")
    with pytest.raises(ValueError, match=r"^packed rows for an encoder need form='mask4d'"):
        for_model(tiny_config("bert"), form="position_ids")


def test_model_task_reads_mappings_auto_map_and_architectures() -> None:
    from transformers import BertConfig, LlamaConfig, PretrainedConfig

    assert model_task(tiny_config("llama")) == "causal-lm"
    assert model_task(tiny_config("bert")) == "masked-lm"  # in both mappings: masked
    assert model_task(BertConfig(is_decoder=True)) == "causal-lm"
    assert model_task(BertConfig(architectures=["BertLMHeadModel"])) == "causal-lm"
    remote = PretrainedConfig(auto_map={"AutoConfig": "c.C", "AutoModelForCausalLM": "m.M"})
    assert model_task(remote) == "causal-lm"
    remote = PretrainedConfig(auto_map={"AutoConfig": "c.C", "AutoModel": "m.M"})
    assert model_task(remote) == "base"
    assert model_task(PretrainedConfig()) is None
    # A remote-code decoder's config alone, its modules unbuilt: causal from its auto_map.
    decoder = PretrainedConfig(auto_map={"AutoModelForCausalLM": "m.M"}, vocab_size=10)
    assert model_facts(decoder).causal is True
    assert model_facts(LlamaConfig(vocab_size=10, hidden_size=8, num_attention_heads=2,
                                   num_hidden_layers=1, intermediate_size=8)).causal  # fmt: skip
