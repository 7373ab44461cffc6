"""maskprep.collate: rows → model kwargs, and the block-diagonal mask proven on a tiny Llama."""

from __future__ import annotations

import numpy as np
import pytest
from rowkit import one_torch_thread, pack_rows, random_docs, tiny_config
from upstream import DECODER_PACKS_LEAK_WITH_A_CACHE, measured_fact

from maskprep.collate import Collator, block_mask, collate, positions_in_segments
from maskprep.columns import IGNORE_INDEX
from maskprep.errors import DataError, MaskprepError

torch = pytest.importorskip("torch", reason="needs the verify extra (torch)")

A, B = [10, 11, 12], [20, 21]
PAD = 3

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def test_rows_of_unequal_length_are_padded_per_batch_right() -> None:
    rows = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [5, 6, 7]},
        {"input_ids": [8], "attention_mask": [1], "labels": [IGNORE_INDEX]},
    ]
    out = collate(rows, pad_id=PAD, padding_side="right")
    assert set(out) == {"input_ids", "attention_mask", "labels"}
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["labels"].tolist() == [[5, 6, 7], [IGNORE_INDEX] * 3]
    assert out["input_ids"].dtype == torch.long


def test_rows_of_unequal_length_are_padded_per_batch_left_with_position_ids() -> None:
    rows = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [5, 6, 7]},
        {"input_ids": [8, 9], "attention_mask": [1, 1], "labels": [8, 9]},
    ]
    out = collate(rows, pad_id=PAD, padding_side="left", pad_position_ids=True)
    assert out["input_ids"].tolist() == [[5, 6, 7], [PAD, 8, 9]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]
    # Row 2's first token would be predicted from the pad now before it: not a target.
    assert out["labels"].tolist() == [[5, 6, 7], [IGNORE_INDEX, IGNORE_INDEX, 9]]
    assert out["position_ids"].tolist() == [[0, 1, 2], [0, 0, 1]]


def test_padded_rows_get_no_position_ids_unless_asked() -> None:
    rows = [{"input_ids": [5], "attention_mask": [1], "labels": [5]}]
    assert "position_ids" not in collate(rows)


def test_pack_position_ids_form_has_no_attention_mask_and_no_cache() -> None:
    out = collate(pack_rows([[A, B]], 6, PAD), form="position_ids")
    assert set(out) == {"input_ids", "labels", "position_ids", "use_cache"}
    assert out["use_cache"] is False
    assert out["input_ids"].tolist() == [[10, 11, 12, 20, 21, PAD]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0]]
    assert out["labels"].tolist() == [[IGNORE_INDEX, 11, 12, IGNORE_INDEX, 21, IGNORE_INDEX]]


def test_mask4d_is_the_drawn_block_diagonal_causal_matrix() -> None:
    out = collate(pack_rows([[A, B]], 6, PAD), form="mask4d", dtype="float32")
    mask = out["attention_mask"]
    assert mask.shape == (1, 1, 6, 6)
    assert mask.dtype == torch.float32
    allowed = (mask[0, 0] == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ]
    assert mask[0, 0, 0, 1].item() == torch.finfo(torch.float32).min
    assert out["use_cache"] is False
    assert out["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0]]


def test_mask4d_for_encoders_has_full_blocks_and_follows_dtype() -> None:
    out = collate(pack_rows([[A, B]], 5, PAD), form="mask4d", causal=False, dtype="bfloat16")
    assert out["attention_mask"].dtype == torch.bfloat16
    allowed = (out["attention_mask"][0, 0] == 0).int().tolist()
    assert allowed == [
        [1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1],
        [0, 0, 0, 1, 1],
    ]


def test_mask2d_form_is_the_plain_row_mask() -> None:
    out = collate(pack_rows([[A, B]], 6, PAD), form="mask2d")
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0]]


def test_arrow_table_and_dicts_give_the_same_tensors() -> None:
    table = pack_rows([[A, B], [B, A, [30]]], 7, PAD)
    from_table = collate(table, form="mask4d")
    from_dicts = collate(table.to_pylist(), form="mask4d")
    from_slice = collate(pack_rows([[A], [A, B, [30]]], 7, PAD).slice(1, 1), form="mask4d")
    for key in ("input_ids", "labels", "position_ids", "attention_mask"):
        assert torch.equal(from_table[key], from_dicts[key])
    assert from_slice["input_ids"].tolist() == [[10, 11, 12, 20, 21, 30, PAD]]


def test_collator_binds_options() -> None:
    table = pack_rows([[A, B]], 6, PAD)
    bound = Collator(pad_id=PAD, form="mask4d")(table)
    assert torch.equal(bound["attention_mask"], collate(table, form="mask4d")["attention_mask"])


def test_seq_lens_that_disagree_with_the_mask_are_an_error() -> None:
    row = pack_rows([[A, B]], 6, PAD).to_pylist()[0]
    row["seq_lens"] = [3, 3]
    with pytest.raises(DataError, match=r"row 0: seq_lens sum to 6 but the row has 5 real tokens"):
        collate([row])


def test_unknown_form_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="form must be one of") as raised:
        collate(pack_rows([[A]], 4, PAD), form="flat")  # type: ignore[arg-type]
    assert not isinstance(raised.value, MaskprepError)  # the caller's code, not the data


def test_positions_in_segments_restart_per_document() -> None:
    segments = np.array([[0, 0, 0, 1, 1, -1], [-1, 0, 0, 1, 2, 2]])
    assert positions_in_segments(segments).tolist() == [[0, 1, 2, 0, 1, 0], [0, 0, 1, 0, 0, 1]]
    assert block_mask(segments).shape == (2, 1, 6, 6)


def test_pack_matches_data_collator_with_flattening() -> None:
    from transformers import DataCollatorWithFlattening

    docs = random_docs(3, 4)
    width = sum(len(d) for d in docs)
    ours = collate(pack_rows([docs], width, PAD), form="position_ids")
    theirs = DataCollatorWithFlattening(return_tensors="pt")([{"input_ids": d} for d in docs])
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["labels"], theirs["labels"])
    assert torch.equal(ours["position_ids"], theirs["position_ids"])


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config("llama")).eval()


def _alone(model, doc: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([doc]), use_cache=False).logits[0]


def _packed(model, kwargs: dict) -> torch.Tensor:
    feed = {k: v for k, v in kwargs.items() if k != "labels"}
    with torch.no_grad():
        return model(**feed).logits


def _worst_document_diff(model, docs_per_row, kwargs) -> float:
    logits = _packed(model, kwargs)
    worst = 0.0
    for row, docs in enumerate(docs_per_row):
        start = 0
        for doc in docs:
            inside = logits[row, start : start + len(doc)]
            worst = max(worst, float((inside - _alone(model, doc)).abs().max()))
            start += len(doc)
    return worst


@pytest.mark.integration  # a model's forward passes
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("form", ["mask4d", "position_ids"])
def test_each_document_of_a_pack_gives_its_logits_alone(llama, attn, form) -> None:
    llama.set_attn_implementation(attn)
    docs = random_docs(7, 7)
    rows = [docs[:3], docs[3:5], docs[5:]]
    kwargs = collate(pack_rows(rows, 28, PAD), pad_id=PAD, form=form)
    assert _worst_document_diff(llama, rows, kwargs) < 1e-5


@pytest.mark.integration  # a model's forward passes
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_negative_control_leaks(llama, attn) -> None:
    """An all-ones 2D mask lets documents mix: the comparison above can see a leak."""
    llama.set_attn_implementation(attn)
    docs = random_docs(7, 4)
    rows = [docs[:2], docs[2:]]
    table = pack_rows(rows, 20, PAD)
    assert _worst_document_diff(llama, rows, collate(table, form="mask2d")) > 1e-2


@measured_fact
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_position_ids_with_the_cache_left_on_leak(llama, attn) -> None:
    """Why the position_ids form carries use_cache=False (DECODER_PACKS_LEAK_WITH_A_CACHE)."""
    llama.set_attn_implementation(attn)
    docs = random_docs(7, 4)
    rows = [docs[:2], docs[2:]]
    cached = collate(pack_rows(rows, 20, PAD), form="position_ids")
    del cached["use_cache"]
    leaked = _worst_document_diff(llama, rows, cached) > 1e-2
    assert leaked == DECODER_PACKS_LEAK_WITH_A_CACHE
