"""The two warnings of issue 21: rows that look packed but are not declared so
(``undeclared_packs``: the pack whose seq_lens and position_ids a pipeline dropped), and one pad
the mask marks as real next to a padded row's real run (``pad_attended_at_edge``). Each is
planted and caught, with negative controls on maskprep's own outputs (chat, prompt/completion,
plain pad with EOS, pad == EOS) and hostile rows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_config, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

import maskprep
from maskprep import SFTConfig, build, columns, read_manifest
from maskprep.cli import main
from maskprep.columns import IGNORE_INDEX as I
from maskprep.inspecting.driver import check_table
from maskprep.inspecting.layout import LayoutHints
from maskprep.inspecting.options import InspectOptions

EOS, BOS = 2, 1  # llama_like and with_pad; with_pad pads with 3
PAD = 3

# Mistral-style: every assistant turn ends with EOS, which is trained.
EOS_TURNS = (
    "{{ bos_token }}{%- for m in messages %}"
    "{%- if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{%- else %}{% generation %}{{ ' ' + m['content'] + eos_token }}{% endgeneration %}"
    "{%- endif %}{%- endfor %}"
)
CHATS = [
    {
        "messages": [
            {"role": "user", "content": "What does the attention mask do?"},
            {"role": "assistant", "content": "It hides padding."},
            {"role": "user", "content": "And labels of minus one hundred?"},
            {"role": "assistant", "content": "The loss ignores them."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "Again."},
            {"role": "assistant", "content": "Hi again!"},
        ]
    },
]


def _check(result, name: str):
    return next(c for c in result.checks if c.name == name)


def _strip(shard: Path, target: Path, *, keep_metadata: bool) -> Path:
    """What a pipeline does: drop seq_lens and position_ids, write the rest back (pyarrow keeps
    the schema metadata through that; another writer may not)."""
    table = pq.read_table(shard).drop_columns(list(columns.PACK_COLUMNS))
    if not keep_metadata:
        table = table.replace_schema_metadata(None)
    pq.write_table(table, target)
    return target


def _shard(output: Path) -> Path:
    return output / read_manifest(output).shards[0].path


@pytest.fixture(scope="module")
def packs(tmp_path_factory, with_pad, llama_like, corpus) -> dict[str, Path]:
    """Real packs whose documents end with EOS: pad 3 (with_pad) and pad == EOS (llama_like)."""
    root = tmp_path_factory.mktemp("packs")
    data = write_jsonl(root / "docs.jsonl", [{"text": t} for t in corpus])
    options = {"strategy": "pack", "max_length": 64, "add_eos": True}
    return {
        "pad3": build(make_config([data], with_pad, root / "pad3", **options)).output,
        "pad=eos": build(
            make_config([data], llama_like, root / "eos", pad_token="eos", **options)
        ).output,
    }


# ----------------------------------------------------------------------------- undeclared_packs


def test_a_real_pack_passes(packs) -> None:
    for output in packs.values():
        result = maskprep.inspect(str(output))
        assert _check(result, "undeclared_packs").status == "pass"
        assert result.passes(strict=True), result.failures(strict=True)


@pytest.mark.parametrize("which", ["pad3", "pad=eos"])
def test_a_stripped_pack_that_kept_its_metadata_warns(packs, which, tmp_path, runner) -> None:
    stripped = _strip(_shard(packs[which]), tmp_path / "stripped.parquet", keep_metadata=True)
    result = maskprep.inspect(str(stripped))
    check = _check(result, "undeclared_packs")
    rows = pq.read_metadata(stripped).num_rows
    assert (check.status, check.count, check.rows) == ("warn", rows, (0, 1, 2, 3, 4))
    assert "stripped.parquet: the metadata says the rows are packs, but seq_lens and " in (
        check.detail
    )
    # The rows are held to what they now are (padded rows), not refused.
    assert result.layout.strategy == "pad" and result.layout.strategy_source == "inferred"
    assert result.ok and not result.passes(strict=True)
    done = runner.invoke(main, ["inspect", str(stripped)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(main, ["inspect", str(stripped), "--strict"])
    assert done.exit_code == 1
    assert "undeclared_packs (docs/inspect.md#check-undeclared_packs)" in done.stdout


@pytest.mark.parametrize("which", ["pad3", "pad=eos"])
def test_a_stripped_pack_without_metadata_is_seen_by_its_eos(packs, which, tmp_path, runner):
    stripped = _strip(_shard(packs[which]), tmp_path / "stripped.parquet", keep_metadata=False)
    # Nothing says what EOS is: the check cannot run, and --strict says so.
    unknown = _check(maskprep.inspect(str(stripped)), "undeclared_packs")
    assert (unknown.status, unknown.unknown) == ("skip", "EOS id")
    for told in (
        ["--eos-id", str(EOS)],
        ["-t", str(read_manifest(packs[which]).tokenizer.name_or_path)],
    ):
        done = runner.invoke(main, ["inspect", str(stripped), "--json", *told])
        assert done.exit_code == 0, done.output
        check = next(
            c for c in json.loads(done.stdout)["checks"] if c["name"] == "undeclared_packs"
        )
        rows = pq.read_table(packs[which] / "data-00000.parquet").column("seq_lens").to_pylist()
        several = sum(len(docs) > 1 for docs in rows)
        assert check["status"] == "warn" and check["count"] == several > 0, check
        assert (
            "ended by EOS (2)" in check["detail"]
            and "a pack whose pack columns were dropped" in (check["detail"])
        )
        done = runner.invoke(main, ["inspect", str(stripped), "--strict", *told])
        assert done.exit_code == 1


@pytest.fixture(scope="module")
def eos_chat_tok(tmp_path_factory, corpus) -> Path:
    """A toy tokenizer whose chat template ends every assistant turn with EOS (2), no pad."""
    from toy_tokenizer import make_tokenizer

    texts = [m["content"] for chat in CHATS for m in chat["messages"]] + corpus + ["[INST] [/INST]"]
    return make_tokenizer(
        tmp_path_factory.mktemp("tok") / "eos_turns", texts * 3, chat_template=EOS_TURNS
    )


@pytest.mark.parametrize("train_on", ["assistant", "all"])
def test_chat_whose_turns_end_with_eos_is_no_false_alarm(tmp_path, eos_chat_tok, train_on):
    data = write_jsonl(tmp_path / "chats.jsonl", CHATS)
    sft = SFTConfig(messages_field="messages", train_on=train_on)
    config = make_config([data], eos_chat_tok, tmp_path / "out", sft=sft, pad_token="eos")
    output = build(_with_max_length(config, 96)).output
    rows = pq.read_table(_shard(output)).to_pylist()
    # The premise: EOS stands inside the rows' real runs (it ends the first assistant turn).
    assert all(r["input_ids"][: r["length"] - 1].count(EOS) >= 1 for r in rows)
    for path in (output, _shard(output)):
        result = maskprep.inspect(str(path))
        check = _check(result, "undeclared_packs")
        assert (check.status, check.detail) == ("skip", "chat records: a turn may end with EOS")
        assert check.unknown is None
    if train_on == "assistant":
        # Without anything saying they are chats, the untrained user turns tell them from packs.
        bare = tmp_path / "bare.parquet"
        pq.write_table(pq.read_table(_shard(output)).replace_schema_metadata(None), bare)
        told = maskprep.inspect(str(bare), InspectOptions(eos_id=EOS))
        assert _check(told, "undeclared_packs").status == "pass"


def _with_max_length(config, max_length: int):
    shape = dataclasses.replace(config.shape, max_length=max_length)
    return dataclasses.replace(config, shape=shape)


@pytest.mark.parametrize("pad_token", [None, "eos"])
@pytest.mark.parametrize("strategy", ["pad", "pack"])
def test_prompt_completion_outputs_are_no_false_alarm(tmp_path, with_pad, strategy, pad_token):
    records = [
        {"prompt": f"Question {i}: what is padding?", "completion": " Filler, never attended."}
        for i in range(12)
    ]
    data = write_jsonl(tmp_path / "pairs.jsonl", records)
    sft = SFTConfig(prompt_field="prompt", completion_field="completion")
    options = {"pad_token": pad_token} if pad_token else {}
    config = make_config(
        [data], with_pad, tmp_path / "out", sft=sft, strategy=strategy, max_length=64, **options
    )
    output = build(config).output
    bare = tmp_path / "bare.parquet"
    table = pq.read_table(_shard(output))
    if strategy == "pack":
        table = table.drop_columns(list(columns.PACK_COLUMNS))
    pq.write_table(table.replace_schema_metadata(None), bare)
    result = maskprep.inspect(str(output))
    assert _check(result, "undeclared_packs").status == "pass"
    assert result.passes(strict=True), result.failures(strict=True)
    # Without anything saying what they are, the untrained prompts inside the rows keep them
    # from looking like plain text run together (so a packed prompt/completion output stripped
    # of its pack columns and its metadata is not seen: a documented limit).
    told = maskprep.inspect(str(bare), InspectOptions(eos_id=EOS))
    assert _check(told, "undeclared_packs").status == "pass"


@pytest.mark.parametrize("pad_token", [None, "eos"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_plain_pad_outputs_with_eos_are_no_false_alarm(
    tmp_path, with_pad, corpus, pad_token, side
) -> None:
    data = write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in corpus])
    options = {"pad_token": pad_token} if pad_token else {}
    config = make_config(
        [data], with_pad, tmp_path / "out", add_eos=True, padding_side=side, **options
    )
    output = build(config).output
    result = maskprep.inspect(str(output))
    assert _check(result, "undeclared_packs").status == "pass"
    # pad == EOS: the token before the padding is the document's own EOS, not judged.
    assert _check(result, "pad_attended_at_edge").status == ("skip" if pad_token else "pass")
    assert result.passes(strict=True), result.failures(strict=True)


def _table(rows: list[dict]) -> pa.Table:
    for row in rows:
        row.setdefault("attention_mask", [1] * len(row["input_ids"]))
        row["length"] = sum(row["attention_mask"])
    return pa.Table.from_pylist(rows, schema=columns.schema())


def _undeclared(rows, **hints):
    results = check_table(_table(rows), LayoutHints(**hints))
    return next(r for r in results if r.name == "undeclared_packs")


@pytest.mark.parametrize(
    ("row", "hints", "flagged"),
    [
        # Two documents, each ending with EOS, doc starts untrained: the stripped pack.
        (
            {"input_ids": [BOS, 5, 6, EOS, BOS, 7, EOS], "labels": [I, 5, 6, EOS, I, 7, EOS]},
            {},
            True,
        ),
        # Another tool's concatenation trains everything.
        ({"input_ids": [5, 6, EOS, 7, 8, EOS], "labels": [5, 6, EOS, 7, 8, EOS]}, {}, True),
        # One document ending with EOS, then padding that holds EOS: not several.
        (
            {
                "input_ids": [BOS, 5, 6, EOS, EOS, EOS],
                "attention_mask": [1, 1, 1, 1, 0, 0],
                "labels": [BOS, 5, 6, EOS, I, I],
            },
            {"pad_id": EOS},
            False,
        ),
        # An untrained span inside the row (a prompt, a user turn): SFT, not a stripped pack.
        ({"input_ids": [5, 6, EOS, 7, 8, EOS], "labels": [I, I, I, 7, 8, EOS]}, {}, False),
        # GPT-2: BOS == EOS opens the row and EOS closes it: one document.
        ({"input_ids": [EOS, 5, 6, EOS], "labels": [EOS, 5, 6, EOS]}, {"bos_id": EOS}, False),
        # ... and two of them one after another: several.
        (
            {"input_ids": [EOS, 5, 6, EOS, EOS, 7, EOS], "labels": [I, 5, 6, EOS, I, 7, EOS]},
            {"bos_id": EOS},
            True,
        ),
        # Documents without EOS, each opened by BOS (packs built with --no-add-eos).
        (
            {"input_ids": [BOS, 5, 6, BOS, 7, 8], "labels": [I, 5, 6, I, 7, 8]},
            {"bos_id": BOS},
            True,
        ),
        # ... which BOS alone does not see when the BOS id is not known.
        ({"input_ids": [BOS, 5, 6, BOS, 7, 8], "labels": [I, 5, 6, I, 7, 8]}, {}, False),
        # Left padding: the first real label is untrained (a document start), EOS inside.
        (
            {
                "input_ids": [PAD, 5, 6, EOS, 7, EOS],
                "attention_mask": [0, 1, 1, 1, 1, 1],
                "labels": [I, I, 6, EOS, I, EOS],
            },
            {"pad_id": PAD},
            True,
        ),
    ],
)
def test_several_documents_in_hostile_rows(row, hints, flagged) -> None:
    check = _undeclared([row], eos_id=EOS, **hints)
    assert check.status == ("warn" if flagged else "pass"), check
    assert check.rows == ((0,) if flagged else ())


def test_undeclared_packs_needs_an_eos_or_bos() -> None:
    row = {"input_ids": [5, 6, EOS, 7, EOS], "labels": [5, 6, EOS, 7, EOS]}
    check = _undeclared([row])
    assert (check.status, check.unknown) == ("skip", "EOS id")
    check = _undeclared([row], no_eos=True)
    assert (check.status, check.unknown) == ("skip", None)
    assert check.detail == "the tokenizer has no EOS or BOS to see documents by"


# ------------------------------------------------------------------------ pad_attended_at_edge


def _edge(rows, **hints):
    results = check_table(_table(rows), LayoutHints(**hints))
    return next(r for r in results if r.name == "pad_attended_at_edge")


LEFT_ONE_ATTENDED = {
    # [P P P a b c] with the mask [0 0 1 1 1 1]: a, b and c see a pad.
    "input_ids": [PAD, PAD, PAD, 5, 6, 7],
    "attention_mask": [0, 0, 1, 1, 1, 1],
    "labels": [I, I, I, I, 6, 7],
}
RIGHT_ONE_ATTENDED = {
    "input_ids": [5, 6, 7, PAD, PAD, PAD],
    "attention_mask": [1, 1, 1, 1, 0, 0],
    "labels": [5, 6, 7, I, I, I],
}


def test_one_attended_pad_next_to_a_left_padded_run_warns(tmp_path, runner) -> None:
    clean = {
        "input_ids": [PAD, PAD, PAD, 5, 6, 7],
        "attention_mask": [0, 0, 0, 1, 1, 1],
        "labels": [I, I, I, I, 6, 7],
    }
    check = _edge([clean, LEFT_ONE_ATTENDED, clean], pad_id=PAD, eos_id=EOS, bos_id=BOS)
    assert (check.status, check.count, check.rows) == ("warn", 1, (1,))
    assert "attend pad id 3 at the edge of their real run" in check.detail
    # Negative control: the same rows correctly masked pass.
    assert _edge([clean, clean], pad_id=PAD, eos_id=EOS).status == "pass"
    # Through the command line, on a shard another tool wrote: the pad id is inferred.
    path = tmp_path / "left.parquet"
    pq.write_table(_table([dict(clean), dict(LEFT_ONE_ATTENDED)]), path)
    done = runner.invoke(main, ["inspect", str(path), "--eos-id", str(EOS), "--strict"])
    assert done.exit_code == 1
    assert "pad_attended_at_edge (docs/inspect.md#check-pad_attended_at_edge)" in done.stdout
    done = runner.invoke(main, ["inspect", str(path), "--eos-id", str(EOS), "--json"])
    assert done.exit_code == 0  # a warning
    check = next(
        c for c in json.loads(done.stdout)["checks"] if c["name"] == "pad_attended_at_edge"
    )
    assert (check["status"], check["rows"]) == ("warn", [1])
    # inspect's other checks and verify's padding_attended miss it: the mask is not all ones.
    assert [
        c["name"] for c in json.loads(done.stdout)["checks"] if c["status"] in ("fail", "warn")
    ] == ["pad_attended_at_edge"]


def test_one_attended_pad_at_the_end_of_a_right_padded_run() -> None:
    check = _edge([RIGHT_ONE_ATTENDED], pad_id=PAD, eos_id=EOS)
    assert (check.status, check.rows) == ("warn", (0,))


def test_pad_equal_to_eos_does_not_warn_for_a_real_eos_at_the_end() -> None:
    """The negative control: with pad == EOS the last real token is the document's own EOS."""
    row = {
        "input_ids": [5, 6, EOS, EOS, EOS],
        "attention_mask": [1, 1, 1, 0, 0],
        "labels": [5, 6, EOS, I, I],
    }
    check = _edge([row], pad_id=EOS, eos_id=EOS)
    assert (check.status, check.unknown) == ("skip", None)  # does not apply: strict passes
    assert check.detail == "pad id 2 is EOS: the token next to a row's padding may be a real EOS"
    # The same row where EOS is not the pad id: a pad (3) at the end of the run is still caught.
    planted = {**row, "input_ids": [5, 6, PAD, PAD, PAD]}
    assert _edge([planted], pad_id=PAD, eos_id=EOS).status == "warn"
    # A left-padded row opening with BOS == pad id is not judged; its right-padded rows are.
    left = {"input_ids": [BOS, BOS, 5, 6], "attention_mask": [0, 1, 1, 1], "labels": [I, I, 5, 6]}
    check = _edge([left], pad_id=BOS, eos_id=EOS, bos_id=BOS)
    assert check.status == "pass" and check.detail.endswith(
        "(left-padded rows not judged: it is BOS)"
    )
    right = {"input_ids": [5, 6, BOS, BOS], "attention_mask": [1, 1, 1, 0], "labels": [5, 6, I, I]}
    assert _edge([left, right], pad_id=BOS, eos_id=EOS, bos_id=BOS).rows == (1,)


def test_pad_at_the_edge_with_the_eos_id_unknown_is_not_run() -> None:
    check = _edge([RIGHT_ONE_ATTENDED], pad_id=PAD)
    assert (check.status, check.unknown) == ("skip", "EOS id")
    # A tokenizer known to have no EOS: the pad id cannot be a real EOS.
    assert _edge([RIGHT_ONE_ATTENDED], pad_id=PAD, no_eos=True).status == "warn"
    # Without such a row there is nothing to be unsure about.
    clean = {**RIGHT_ONE_ATTENDED, "attention_mask": [1, 1, 1, 0, 0, 0]}
    assert _edge([clean], pad_id=PAD).status == "pass"


def test_pad_attended_at_edge_in_a_real_left_padded_build(tmp_path, with_pad, corpus) -> None:
    data = write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in corpus])
    config = make_config([data], with_pad, tmp_path / "out", padding_side="left", max_length=24)
    output = build(config).output
    assert _check(maskprep.inspect(str(output)), "pad_attended_at_edge").status == "pass"
    shard = _shard(output)
    table = pq.read_table(shard)
    rows = table.to_pylist()
    padded = next(i for i, r in enumerate(rows) if r["length"] < len(r["input_ids"]))
    row = rows[padded]
    first = row["attention_mask"].index(1)
    row["attention_mask"][first - 1] = 1  # one pad next to the real run, attended
    row["length"] += 1
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    result = maskprep.inspect(str(output), InspectOptions(check_hashes=False))
    check = _check(result, "pad_attended_at_edge")
    assert (check.status, check.rows) == ("warn", (padded,))
    assert not result.passes(strict=True)


def test_verify_and_the_collator_refuse_a_declared_pack_that_lost_its_columns(packs, tmp_path):
    from maskprep import DataError
    from maskprep.collate import Collator
    from maskprep.verifying.sampling import sample_rows

    stripped = _strip(_shard(packs["pad3"]), tmp_path / "stripped.parquet", keep_metadata=True)
    expected = (
        f"{stripped}: declared packed rows, but seq_lens and position_ids are gone (dropped by a "
        "pipeline?): the documents of a row cannot be kept apart; restore both columns or rebuild"
    )
    for read in (
        lambda: sample_rows(str(stripped), 4, 0, 0),
        lambda: Collator.for_output(stripped),
    ):
        with pytest.raises(DataError) as raised:
            read()
        assert str(raised.value) == expected


def _several_by_hand(ids, mask, labels, eos, bos) -> bool:
    """The rule of undeclared_packs for one row, written plainly."""
    real = [i for i, m in enumerate(mask) if m]
    if not real:
        return False
    inside = [i for i in real if i - 1 in real and i + 1 in real]
    ends = {i for i in inside if ids[i] == eos}
    opens = {i for i in inside if bos is not None and ids[i] == bos}
    if not ends and not opens:
        return False
    starts = {i for i in real if i - 1 not in real} | {i + 1 for i in ends} | opens
    return all(labels[i] != I or i in starts for i in real)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.lists(st.sampled_from([EOS, BOS, 5, 6]), min_size=0, max_size=9),
            st.integers(0, 3),  # padding
            st.sampled_from(["right", "left"]),
            st.lists(st.booleans(), min_size=12, max_size=12),  # trained flags
        ),
        min_size=1,
        max_size=6,
    ),
    bos=st.sampled_from([None, BOS, EOS]),
)
def test_several_documents_matches_the_rule_written_plainly(rows, bos) -> None:
    table, expected = [], []
    for real_ids, pad, side, trained in rows:
        mask = [1] * len(real_ids) + [0] * pad
        ids = real_ids + [PAD] * pad
        if side == "left":
            mask, ids = mask[::-1], [PAD] * pad + real_ids
        labels = [
            t if m and trained[i] else I for i, (t, m) in enumerate(zip(ids, mask, strict=True))
        ]
        table.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
        expected.append(_several_by_hand(ids, mask, labels, EOS, bos))
    hints = LayoutHints(eos_id=EOS, pad_id=PAD, bos_id=bos)
    results = check_table(_table(table), hints, InspectOptions(listed=len(table)))
    found = next(r for r in results if r.name == "undeclared_packs")
    several = [row for row, flagged in enumerate(expected) if flagged]
    assert (found.count, list(found.rows)) == (len(several), several)
