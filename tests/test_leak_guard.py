"""maskprep.training.LeakGuard: the first batch a model really receives, checked against the output
it came from. A leaky feed stops ``Trainer``, TRL's ``SFTTrainer`` and a plain loop before the
first optimizer step (the weights are untouched) with one line naming the leak and the fix;
maskprep's collator trains its steps, the guard quiet but on record (``guard.reports``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import SAMPLE
from rowkit import one_torch_thread
from training_kit import TWO_QUIET_STEPS as STEPS
from training_kit import build_output, tiny_model

import maskprep
from maskprep.collate import Collator

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch", reason="needs torch (the verify extra)")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (the test extra)")

from maskprep.training import LeakError, LeakGuard  # noqa: E402

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    """The sample notes packed at 64, pad == eos, every document ending in EOS."""
    return build_output(
        tmp_path_factory.mktemp("pack") / "out",
        [SAMPLE / "notes.txt", SAMPLE / "instructions.jsonl"],
        SAMPLE / "tokenizer",
        "pack",
        max_length=64,
        pad_token="eos",
        add_eos=True,
    )


@pytest.fixture(scope="module")
def bucket(tmp_path_factory) -> Path:
    """Buckets of 32 and 64, padded on the left: the collator pads short rows again."""
    return build_output(
        tmp_path_factory.mktemp("bucket") / "out",
        [SAMPLE / "notes.txt", SAMPLE / "instructions.jsonl"],
        SAMPLE / "tokenizer",
        "bucket",
        max_length=64,
        buckets=(32, 64),
        padding_side="left",
        pad_token="eos",
        add_eos=True,
    )


@pytest.fixture(scope="module")
def sft(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sft")
    maskprep.build(
        maskprep.BuildConfig(
            source=maskprep.SourceConfig(inputs=(str(SAMPLE / "instructions.jsonl"),)),
            tokenizer=maskprep.TokenizerConfig(str(SAMPLE / "tokenizer"), pad_token="eos"),
            shape=maskprep.ShapeConfig(max_length=64, strategy="pack"),
            output=maskprep.OutputConfig(str(root / "out")),
            sft=maskprep.SFTConfig(prompt_field="prompt", completion_field="completion"),
        )
    )
    return root / "out"


def _llama():
    return tiny_model("llama", vocab_size=600)


def _tokenizer():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(SAMPLE / "tokenizer"))
    tokenizer.pad_token = tokenizer.eos_token  # as the build did
    return tokenizer


def _weights(model) -> list:
    return [p.detach().clone() for p in model.parameters()]


def _moved(before, model) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def _trainer(model, output, collator, guard, tmp_path, **arguments):
    from transformers import Trainer, TrainingArguments

    return Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path / "run"), **STEPS, **arguments),
        train_dataset=maskprep.load_dataset(output),
        data_collator=collator,
        callbacks=[guard],
    )


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_trainer_with_a_leaky_collator_stops_before_the_first_step(pack, tmp_path) -> None:
    from transformers import default_data_collator

    model = _llama()
    before = _weights(model)
    guard = LeakGuard(pack)
    with pytest.raises(LeakError) as error:
        _trainer(model, pack, default_data_collator, guard, tmp_path).train()
    message = _one_line(error)
    assert message.startswith("LeakGuard: batch 1 (rows ")
    assert "mask_structure at row" in message and "see tokens of another document" in message
    assert "unpadded_reference at row" in message and "from itself run alone" in message
    assert f"fix: train with Collator.for_output({str(pack)!r}, model=model)" in message
    assert "a 2D attention_mask" in message
    assert not _moved(before, model), "an optimizer step ran before the guard stopped the run"
    assert isinstance(error.value, maskprep.DataError) and guard.reports == []


def test_trainer_with_maskprep_collator_trains_and_the_guard_checked(pack, tmp_path) -> None:
    model = _llama()
    before = _weights(model)
    guard = LeakGuard(pack)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # quiet: not even an inconclusive warning
        trainer = _trainer(model, pack, Collator.for_output(pack, model=model), guard, tmp_path)
        result = trainer.train()
    assert result.global_step == 2 and _moved(before, model)
    (report,) = guard.reports
    assert len(report.rows) == 4 and report.max_diff < report.tolerance
    assert report.checks == (
        "positions", "mask_structure", "labels_extra", "labels_missing", "unpadded_reference"
    )  # fmt: skip
    assert guard._handle is None, "the hook outlived the batches it checks"
    trainer.train()  # a second run is watched again
    assert len(guard.reports) == 2 and guard._handle is None


def test_language_modeling_collator_with_pad_eos_stops_naming_the_eos(pack, tmp_path) -> None:
    from transformers import DataCollatorForLanguageModeling

    model = _llama()
    collator = DataCollatorForLanguageModeling(_tokenizer(), mlm=False)
    with pytest.raises(LeakError) as error:
        _trainer(model, pack, collator, LeakGuard(pack), tmp_path).train()
    message = _one_line(error)
    assert "labels_missing at row" in message and "real EOS trained 0 of" in message
    assert "pad == eos" in message
    assert "labels_extra at row" in message and "first tokens of a document" in message


def test_static_checks_alone_still_see_a_2d_mask_on_a_pack(pack, tmp_path) -> None:
    from transformers import default_data_collator

    guard = LeakGuard(pack, compare=False)
    with pytest.raises(LeakError, match=r"mask_structure at row \d+: fed a 2D mask") as error:
        _trainer(_llama(), pack, default_data_collator, guard, tmp_path).train()
    assert "unpadded_reference" not in str(error.value)


def test_the_forward_comparison_sees_what_no_static_rule_names(pack) -> None:
    """A feed without a mask leaves it to the model: with the KV cache on (config.use_cache is
    true outside Trainer, which sets it from TrainingArguments.use_cache), a decoder's documents
    see each other in the position_ids form without use_cache=False. Only the comparison sees
    it."""
    model = _llama()
    assert model.config.use_cache
    rows = maskprep.load_dataset(pack).select(range(4)).to_list()
    batch = Collator.for_output(pack, model=model, form="position_ids")(rows)
    guard = LeakGuard(pack)
    assert guard.check(batch, model).max_diff < 1e-5
    del batch["use_cache"]
    with pytest.raises(LeakError, match=r"unpadded_reference at row .*no attention_mask") as error:
        guard.check(batch, model)
    assert "mask_structure" not in str(error.value)
    static = LeakGuard(pack, compare=False).check(batch, model)
    assert static.max_diff is None  # judged by the static checks only: they cannot see it


def test_bucket_rows_padded_again_by_the_collator_are_found(bucket, tmp_path) -> None:
    model = _llama()
    guard = LeakGuard(bucket, batches=2)
    _trainer(model, bucket, Collator.for_output(bucket, model=model), guard, tmp_path).train()
    assert len(guard.reports) == 2
    assert all(r.max_diff is not None and r.max_diff < r.tolerance for r in guard.reports)


def test_rows_of_another_output_stop_the_run(pack, bucket, tmp_path) -> None:
    model = _llama()
    with pytest.raises(LeakError, match=r"fed row 0 is none of the \d+ rows of .*cannot vouch"):
        _trainer(
            model, bucket, Collator.for_output(bucket, model=model), LeakGuard(pack), tmp_path
        ).train()


def _sft_trainer(model, output, collator, guard, tmp_path):
    trl = pytest.importorskip("trl", reason="TRL is in the test extra")
    from transformers import AutoTokenizer

    args = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"),
        **STEPS,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        bf16=False,
    )
    return trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=maskprep.load_dataset(output),
        data_collator=collator,
        processing_class=AutoTokenizer.from_pretrained(str(SAMPLE / "tokenizer")),
        callbacks=[guard],
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_sft_trainer_leaky_stops_and_maskprep_collator_trains(sft, tmp_path) -> None:
    from transformers import default_data_collator

    def without_pack_columns(rows):
        kept = ("input_ids", "attention_mask", "labels")
        return default_data_collator([{k: r[k] for k in kept} for r in rows])

    model = _llama()
    before = _weights(model)
    with pytest.raises(LeakError, match=r"mask_structure .*fix: train with Collator.for_output"):
        _sft_trainer(model, sft, without_pack_columns, LeakGuard(sft), tmp_path).train()
    assert not _moved(before, model)
    model = _llama()
    guard = LeakGuard(sft)
    collator = Collator.for_output(sft, model=model, form="position_ids")
    result = _sft_trainer(model, sft, collator, guard, tmp_path).train()
    assert result.global_step == 2 and len(guard.reports) == 1
    assert guard.reports[0].max_diff < guard.reports[0].tolerance


def _loop(model, output, collator, guard: LeakGuard, steps: int = 3) -> int:
    from torch.utils.data import DataLoader

    loader = DataLoader(maskprep.load_dataset(output), batch_size=4, collate_fn=collator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    guard.watch(model)
    model.train()
    done = 0
    for batch in loader:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        done += 1
        if done == steps:
            break
    return done


def test_a_plain_loop_watched_stops_on_a_leak_and_runs_on_a_clean_feed(pack) -> None:
    from transformers import default_data_collator

    model = _llama()
    before = _weights(model)
    with pytest.raises(LeakError, match=r"^LeakGuard: batch 1 .*mask_structure"):
        _loop(model, pack, default_data_collator, LeakGuard(pack))
    assert not _moved(before, model)
    guard = LeakGuard(pack)
    assert _loop(model, pack, Collator.for_output(pack, model=model), guard) == 3
    assert len(guard.reports) == 1 and _moved(before, model)


def test_check_is_the_same_check_as_a_function(pack) -> None:
    from transformers import default_data_collator

    model = _llama()
    rows = maskprep.load_dataset(pack).select(range(4)).to_list()
    trainer_rows = [{k: v for k, v in r.items() if k not in ("seq_lens", "length")} for r in rows]
    guard = LeakGuard(pack)
    report = guard.check(Collator.for_output(pack, model=model)(rows), model)
    assert report.rows == (0, 1, 2, 3) and report.max_diff < report.tolerance
    with pytest.raises(LeakError, match=r"mask_structure at row 0"):
        guard.check(default_data_collator(trainer_rows), model)
    assert model.training, "the guard left the model in eval mode"


def test_masked_lm_feeds_of_an_encoder_are_found_and_judged(minilm, tmp_path) -> None:
    """The masked-LM recipe corrupts ids (taken back from the labels to find the rows);
    maskprep's collator under it is quiet, causal blocks fed to the encoder are not."""
    from transformers import AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling

    from maskprep import IGNORE_INDEX

    output = build_output(
        tmp_path / "minilm", [SAMPLE / "notes.txt"], minilm, "pack", max_length=64
    )
    model = BertForMaskedLM.from_pretrained(str(minilm))
    masking = DataCollatorForLanguageModeling(AutoTokenizer.from_pretrained(str(minilm)))
    rows = maskprep.load_dataset(output).select(range(2)).to_list()

    def masked(collator):
        batch = collator(rows)
        skip = batch["labels"] == IGNORE_INDEX
        batch["input_ids"], batch["labels"] = masking.torch_mask_tokens(batch["input_ids"], skip)
        return batch

    torch.manual_seed(0)
    guard = LeakGuard(output)
    report = guard.check(masked(Collator.for_output(output, model=model)), model)
    assert report.max_diff < report.tolerance
    causal = masked(Collator.for_output(output, causal=True))
    with pytest.raises(LeakError, match=r"hidden tokens of their own document.*moved"):
        guard.check(causal, model)


def test_guard_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"batches must be at least 1"):
        LeakGuard("out", batches=0)
