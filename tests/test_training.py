"""The training recipes of docs/training.md, run for real.

``transformers.Trainer`` (default ``remove_unused_columns=True``), a plain PyTorch ``DataLoader``
and TRL's ``SFTTrainer`` train tiny random models for two steps on pad, bucket and pack outputs
built by maskprep, fed by ``Collator.for_output``. What each trainer really fed the model is
recorded, and every document in it must give the logits it gives run alone. Negative controls
feed the same rows through the naive collators and show the leak is large, so these tests can see
one.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SAMPLE, write_jsonl
from rowkit import one_torch_thread
from training_kit import (
    LEAK,
    TWO_QUIET_STEPS,
    assert_documents_alone,
    build_output,
    documents_in,
    model_inputs,
    pack_lookup,
    record_feeds,
    tiny_model,
    worst_document_diff,
)

import maskprep
from maskprep.collate import Collator, collate
from maskprep.errors import DataError

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch", reason="needs torch (the verify extra)")

pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (the test extra)")

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
PAD = 3


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, with_pad, corpus) -> dict[str, Path]:
    """pad (right), bucket (16/32, left padding: the collator pads short rows on the left) and
    pack outputs of 15 short documents (halves of the corpus), pad id 3 (not 0, not EOS)."""
    root = tmp_path_factory.mktemp("training")
    halves = [" ".join(w[: len(w) // 2]) for w in (t.split() for t in corpus)]
    halves += [" ".join(w[len(w) // 2 :]) for w in (t.split() for t in corpus)]
    docs = write_jsonl(root / "docs.jsonl", [{"text": t} for t in halves if t])
    return {
        "pad": build_output(root / "pad", [docs], with_pad, "pad"),
        "bucket": build_output(
            root / "bucket", [docs], with_pad, "bucket", buckets=(16, 32), padding_side="left"
        ),
        "pack": build_output(root / "pack", [docs], with_pad, "pack", max_length=48),
    }


def _train(model, output: Path, collator, tmp_path: Path, **arguments):
    """Two steps of ``transformers.Trainer`` at its defaults (columns removed), batch 4."""
    from transformers import Trainer, TrainingArguments

    fed = record_feeds(model)
    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        **TWO_QUIET_STEPS,
        **arguments,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=maskprep.load_dataset(output), data_collator=collator
    )
    try:
        return trainer.train(), fed
    finally:
        fed.stop()


class _Spy:
    """A collator wrapper that keeps the rows the trainer hands over."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.rows: list[list[dict]] = []

    def __call__(self, rows):
        self.rows.append(rows)
        return self.inner(rows)


@pytest.mark.parametrize("strategy", ["pad", "bucket", "pack"])
@pytest.mark.parametrize("kind", ["llama", "bert", "roberta"])
def test_trainer_feeds_each_document_as_if_alone(kind, strategy, outputs, tmp_path) -> None:
    output = outputs[strategy]
    model = tiny_model(kind)
    before = [p.detach().clone() for p in model.parameters()]
    spy = _Spy(Collator.for_output(output, model=model))
    result, fed = _train(model, output, spy, tmp_path)

    assert math.isfinite(result.training_loss) and len(fed.calls) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # What Trainer keeps by default: the forward's arguments. seq_lens and length are gone.
    kept = {"input_ids", "attention_mask", "labels"} | (
        {"position_ids"} if strategy == "pack" else set()
    )
    assert set(spy.rows[0][0]) == kept
    packs = pack_lookup(output) if strategy == "pack" else None
    for batch in fed.calls:
        docs = documents_in(batch, packs)
        assert_documents_alone(model, batch, docs)
    if strategy == "pack":
        assert len(docs) > fed.calls[-1]["input_ids"].shape[0], "no row held two documents"
        assert fed.calls[-1]["attention_mask"].dim() == 4
    if strategy == "bucket":
        widths = {len(r["input_ids"]) for rows in spy.rows for r in rows}
        assert widths == {16, 32}, "the batches never mixed buckets"


def test_trainer_with_the_position_ids_form_on_a_decoder(outputs, tmp_path) -> None:
    output = outputs["pack"]
    model = tiny_model("llama")
    collator = Collator.for_output(output, model=model, form="position_ids")
    _, fed = _train(model, output, collator, tmp_path)
    for batch in fed.calls:
        assert "attention_mask" not in batch and batch["use_cache"] is False
        assert_documents_alone(model, batch, documents_in(batch, pack_lookup(output)))


def test_trainer_keeping_every_column_cross_checks_seq_lens(outputs, tmp_path) -> None:
    output = outputs["pack"]
    model = tiny_model("llama")
    spy = _Spy(Collator.for_output(output, model=model))
    _, fed = _train(model, output, spy, tmp_path, remove_unused_columns=False)
    assert {"seq_lens", "length"} <= set(spy.rows[0][0])
    assert_documents_alone(model, fed.calls[0], documents_in(fed.calls[0], pack_lookup(output)))


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_naive_collators_leak_on_the_rows_trainer_keeps(kind, outputs, with_pad, tmp_path) -> None:
    """Negative control: the same rows through transformers' plain collators let documents mix."""
    from transformers import AutoTokenizer, DataCollatorWithPadding, default_data_collator

    output = outputs["pack"]
    model = tiny_model(kind)
    spy = _Spy(Collator.for_output(output, model=model))
    _train(model, output, spy, tmp_path)
    rows = spy.rows[-1]
    ours = spy.inner(rows)
    docs = documents_in(ours, pack_lookup(output))
    naive = default_data_collator(rows)
    padded = DataCollatorWithPadding(AutoTokenizer.from_pretrained(str(with_pad)))(rows)

    assert worst_document_diff(model, ours, docs) < 1e-5
    assert worst_document_diff(model, ours, docs, feed=model_inputs(naive)) > LEAK
    assert worst_document_diff(model, ours, docs, feed=model_inputs(dict(padded))) > LEAK


def test_rows_that_lost_their_pack_columns_leak_bare_and_are_refused(outputs, tmp_path) -> None:
    """The collator's old behaviour (packed rows without seq_lens taken for padded rows) leaks;
    a collator that knows the output is packed refuses them, also inside a real Trainer."""
    from transformers import LlamaForCausalLM

    output = outputs["pack"]
    model = tiny_model("llama")
    rows = maskprep.load_dataset(output).select(range(4)).to_list()
    stripped = [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in rows]
    docs = documents_in(collate(rows), pack_lookup(output))
    old = collate(stripped)
    assert old["attention_mask"].dim() == 2 and "position_ids" not in old
    assert worst_document_diff(model, collate(rows, form="mask4d"), docs) < 1e-5
    assert worst_document_diff(model, old, docs) > LEAK
    with pytest.raises(DataError, match=r"remove_unused_columns=False"):
        Collator.for_output(output, model=model)(stripped)

    class NoPositions(LlamaForCausalLM):
        """A model whose forward names no position_ids: Trainer drops that column too."""

        def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
            return super().forward(input_ids, attention_mask, labels=labels, **kwargs)

    torch.manual_seed(0)
    no_positions = NoPositions(model.config)
    with pytest.raises(DataError, match=r"^packed rows arrived without seq_lens and position_ids"):
        _train(no_positions, output, Collator.for_output(output, model=no_positions), tmp_path)


def test_roberta_fed_zero_based_positions_drifts(outputs) -> None:
    """Negative control for the offset: RoBERTa numbers positions from padding_idx + 1."""
    output = outputs["pack"]
    model = tiny_model("roberta")
    rows = maskprep.load_dataset(output).select(range(4)).to_list()
    ours = Collator.for_output(output, model=model)(rows)
    docs = documents_in(ours, pack_lookup(output))
    assert ours["position_ids"][0, 0] == PAD + 1
    zero_based = collate(rows, form="mask4d", causal=False)
    assert worst_document_diff(model, ours, docs) < 1e-5
    assert worst_document_diff(model, ours, docs, feed=model_inputs(zero_based)) > LEAK


def _trl():
    return pytest.importorskip("trl", reason="TRL is in the test extra")


@pytest.fixture(scope="module")
def sft_pack(tmp_path_factory) -> Path:
    """Prompt/completion records of sample_data, packed (prompts untrained)."""
    from maskprep import SFTConfig

    root = tmp_path_factory.mktemp("sft")
    config = maskprep.BuildConfig(
        source=maskprep.SourceConfig(inputs=(str(SAMPLE / "instructions.jsonl"),)),
        tokenizer=maskprep.TokenizerConfig(str(SAMPLE / "tokenizer"), pad_token="eos"),
        shape=maskprep.ShapeConfig(max_length=64, strategy="pack"),
        output=maskprep.OutputConfig(str(root / "out")),
        sft=SFTConfig(prompt_field="prompt", completion_field="completion"),
    )
    maskprep.build(config)
    return root / "out"


def _sft_trainer(model, output: Path, collator, tmp_path: Path, **arguments):
    trl = _trl()
    from transformers import AutoTokenizer

    args = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"),
        **TWO_QUIET_STEPS,
        dataset_kwargs={"skip_prepare_dataset": True},
        # SFTConfig trains in bfloat16 by default, and accelerate leaves the model's forward
        # wrapped in autocast after training: float32 here keeps the float32 tolerances.
        bf16=False,
        **arguments,
    )
    return trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=maskprep.load_dataset(output),
        data_collator=collator,
        processing_class=AutoTokenizer.from_pretrained(str(SAMPLE / "tokenizer")),
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_sft_trainer_at_its_default_columns_is_refused(sft_pack, tmp_path) -> None:
    """SFTTrainer keeps only input_ids, labels and seq_lengths: the masks never arrive."""
    model = tiny_model("llama", vocab_size=600)
    collator = Collator.for_output(sft_pack, model=model, form="position_ids")
    trainer = _sft_trainer(model, sft_pack, collator, tmp_path)
    with pytest.raises(
        DataError, match=r"no 'attention_mask' column; .*remove_unused_columns=False"
    ):
        trainer.train()


def _sample_script():
    spec = importlib.util.spec_from_file_location("train_tiny", SAMPLE / "train_tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("strategy", ["pad", "pack"])
def test_sample_training_script_trains_on_the_quick_start_output(
    strategy, tmp_path, capsys
) -> None:
    from conftest import run_maskprep

    out = tmp_path / "sample"
    built = run_maskprep(
        "build",
        str(SAMPLE / "instructions.jsonl"),
        str(SAMPLE / "notes.txt"),
        "--tokenizer",
        str(SAMPLE / "tokenizer"),
        "--pad-token",
        "eos",
        "--add-eos",
        "--max-length",
        "64",
        "--strategy",
        strategy,
        "--output",
        str(out),
        "-q",
        cwd=ROOT,
    )
    assert built.returncode == 0, built.stderr.decode()
    losses = _sample_script().main([str(out), "--steps", "3"])
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    printed = capsys.readouterr().out
    assert "step 3: loss" in printed


# The recipes of docs/training.md, each Python block run verbatim (no second copy here that could
# drift from the page) in a folder holding what its placeholders name, with every training
# forward pass recorded and each document of the first batches compared with itself run alone.
TRAINING_DOC = ROOT / "docs" / "training.md"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: Batches checked document by document per recipe (every one would take minutes on MiniLM).
CHECKED_BATCHES = 3


def _recipes() -> list[tuple[str, str]]:
    """(``training.md:LINE``, code) of every Python block of the page."""
    text = TRAINING_DOC.read_text(encoding="utf-8")
    return [
        (f"training.md:{text.count(chr(10), 0, m.start()) + 2}", m.group(1))
        for m in _PYTHON_BLOCK.finditer(text)
    ]


def _recipe_cases() -> list:
    cases = []
    for where, code in _recipes():
        strategies = ("pad", "bucket", "pack") if '"out/data"' in code else (None,)
        for strategy in strategies:
            name = where if strategy is None else f"{where}-{strategy}"
            cases.append(pytest.param(where, code, strategy, id=name))
    return cases


@pytest.fixture(scope="module")
def recipe_material(tmp_path_factory, minilm) -> Path:
    """What the recipes' placeholders name: ``path/to/model`` (a tiny random Llama sized to the
    sample tokenizer, which is saved beside it), ``path/to/encoder`` (the real MiniLM), and
    ``out/packed`` (MiniLM, packed) and ``out/sft`` (prompt/completion, packed) built from
    ``sample_data``."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("recipes")
    (root / "path" / "to").mkdir(parents=True)
    tiny_model("llama", vocab_size=600).save_pretrained(root / "path" / "to" / "model")
    AutoTokenizer.from_pretrained(str(SAMPLE / "tokenizer")).save_pretrained(
        root / "path" / "to" / "model"
    )
    (root / "path" / "to" / "encoder").symlink_to(minilm, target_is_directory=True)
    notes = [str(SAMPLE / "notes.txt")]
    build_output(root / "out" / "packed", notes, minilm, "pack", max_length=64)
    maskprep.build(
        maskprep.BuildConfig(
            source=maskprep.SourceConfig(inputs=(str(SAMPLE / "instructions.jsonl"),)),
            tokenizer=maskprep.TokenizerConfig(str(SAMPLE / "tokenizer"), pad_token="eos"),
            shape=maskprep.ShapeConfig(max_length=64, strategy="pack"),
            output=maskprep.OutputConfig(str(root / "out" / "sft")),
            sft=maskprep.SFTConfig(prompt_field="prompt", completion_field="completion"),
        )
    )
    return root


def _recipe_folder(material: Path, tmp_path: Path, strategy: str | None) -> Path:
    """A folder for one recipe: the shared material linked in, and ``out/data`` built from
    ``sample_data`` with ``strategy`` (bucket outputs padded on the left, so that rows of two
    buckets meet in a batch and the collator pads the short ones)."""
    folder = tmp_path / "recipe"
    (folder / "out").mkdir(parents=True)
    (folder / "path").symlink_to(material / "path", target_is_directory=True)
    for name in ("packed", "sft"):
        (folder / "out" / name).symlink_to(material / "out" / name, target_is_directory=True)
    if strategy is not None:
        options = {"pad_token": "eos", "add_eos": True, "max_length": 64}
        if strategy == "bucket":
            options.update(buckets=(32, 64), padding_side="left")
        inputs = [SAMPLE / "instructions.jsonl", SAMPLE / "notes.txt"]
        build_output(folder / "out" / "data", inputs, SAMPLE / "tokenizer", strategy, **options)
    return folder


@contextmanager
def _training_forwards():
    """Every training-mode forward of a transformers model while open: (model, kwargs)."""
    from transformers import PreTrainedModel

    calls: list[tuple[Any, dict[str, Any]]] = []
    depth = 0

    def call(self, *args, **kwargs):
        nonlocal depth
        if depth == 0 and self.training:
            kept = {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}
            calls.append((self, kept))
        depth += 1
        try:
            return torch.nn.Module.__call__(self, *args, **kwargs)
        finally:
            depth -= 1

    PreTrainedModel.__call__ = call
    try:
        yield calls
    finally:
        del PreTrainedModel.__call__


def _run_recipe(where: str, code: str, folder: Path, monkeypatch) -> list:
    """Run ``code`` as a program of its own in ``folder``; the training forwards it made."""
    monkeypatch.chdir(folder)
    with _training_forwards() as calls:
        exec(compile(code, where, "exec"), {"__name__": "__main__"})
    return calls


def _assert_recipe_fed_documents_alone(calls: list, folder: Path) -> None:
    assert calls, "the recipe never ran a training forward pass"
    packs: dict[tuple[int, ...], list[int]] = {}
    for output in (folder / "out").iterdir():
        if maskprep.read_manifest(output).config.strategy == "pack":
            packs.update(pack_lookup(output))
    for model, fed in calls[:CHECKED_BATCHES]:
        batch = {k: v for k, v in fed.items() if k != "fused_lm_head"}
        mask = batch.get("attention_mask")
        packed = mask is None or mask.dim() == 4
        # Labels restore masked-LM corruption; elsewhere they are the ids or IGNORE_INDEX.
        docs = documents_in(batch, packs if packed else None, masked_lm=True)
        assert_documents_alone(model, batch, docs)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # TRL's own gradient_checkpointing default
@pytest.mark.parametrize(("where", "code", "strategy"), _recipe_cases())
def test_every_training_recipe_runs_verbatim_and_feeds_documents_alone(
    where, code, strategy, recipe_material, tmp_path, monkeypatch
) -> None:
    from maskprep.training import LeakGuard

    folder = _recipe_folder(recipe_material, tmp_path, strategy)
    checked = []
    check = LeakGuard.check

    def recorded(guard, batch, model):
        checked.append(check(guard, batch, model))
        return checked[-1]

    monkeypatch.setattr(LeakGuard, "check", recorded)
    calls = _run_recipe(where, code, folder, monkeypatch)
    _assert_recipe_fed_documents_alone(calls, folder)
    # The recipe's guard checked the first batch the model received, and found it clean.
    assert len(checked) == 1 and checked[0].max_diff < checked[0].tolerance


def test_the_page_has_the_recipes_this_file_runs() -> None:
    """Trainer, masked LM, DataLoader and SFTTrainer, each a whole program (its own imports)."""
    recipes = [code for _, code in _recipes()]
    assert len(recipes) == 4
    for needle in ("Trainer(", "torch_mask_tokens", "DataLoader(", "SFTTrainer("):
        assert sum(needle in code for code in recipes) >= 1, needle
    for code in recipes:
        assert "import maskprep" in code and "Collator.for_output(" in code
        assert "from maskprep.training import LeakGuard" in code and "LeakGuard(" in code


def test_the_recipe_check_sees_a_leaky_collator(recipe_material, tmp_path, monkeypatch) -> None:
    """Negative controls: the Trainer recipe with transformers' default collator on a pack is
    stopped by its LeakGuard before a training forward pass completes; without the guard it
    runs, and the documents-alone comparison fails."""
    from maskprep.training import LeakError

    ((where, code),) = [
        (w, c) for w, c in _recipes() if "trainer = Trainer(" in c and "out/data" in c
    ]
    leaky = code.replace(
        'Collator.for_output("out/data", model=model)', "default_data_collator"
    ).replace("from transformers import", "from transformers import default_data_collator,")
    assert leaky != code
    folder = _recipe_folder(recipe_material, tmp_path, "pack")
    with pytest.raises(LeakError, match=r"^LeakGuard: batch 1 .*mask_structure") as error:
        _run_recipe(where, leaky, folder, monkeypatch)
    assert "Collator.for_output('out/data', model=model)" in str(error.value)
    unguarded = leaky.replace('    callbacks=[LeakGuard("out/data")],\n', "")
    assert unguarded != leaky
    calls = _run_recipe(where, unguarded, folder, monkeypatch)
    with pytest.raises(AssertionError, match="Tensor-likes are not close"):
        _assert_recipe_fed_documents_alone(calls, folder)


def _installed_by(name: str, extras: frozenset[str]) -> set[str]:
    """The distributions ``pip install name[extras]`` brings, transitively (canonical names)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: set[str] = set()
    todo = [(name, extras)]
    while todo:
        dist, wanted = todo.pop()
        if canonicalize_name(dist) in found and not wanted:
            continue
        found.add(canonicalize_name(dist))
        try:
            lines = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        environments = [{"extra": e} for e in wanted] or [{"extra": ""}]
        for line in lines:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate(env) for env in environments):
                todo.append((req.name, frozenset(req.extras)))
    return found


def test_the_train_extra_installs_what_the_recipes_import() -> None:
    """Each module the recipes and sample_data/train_tiny.py import comes with maskprep[train]."""
    import ast
    from importlib import metadata

    from packaging.utils import canonicalize_name

    installed = _installed_by("maskprep", frozenset({"train"}))
    owners = metadata.packages_distributions()
    sources = [code for _, code in _recipes()] + [(SAMPLE / "train_tiny.py").read_text()]
    imported = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
        if "maskprep.load_dataset(" in source:
            imported.add("datasets")  # what maskprep.load_dataset imports
    imported -= set(sys.stdlib_module_names) | {"maskprep", "__future__"}
    assert {"torch", "transformers", "datasets", "trl"} <= imported
    missing = {
        module
        for module in imported
        if not {canonicalize_name(d) for d in owners.get(module, [])} & installed
    }
    assert not missing, f"the training recipes import {missing}, which maskprep[train] lacks"
    # The check can fail: the plain install brings none of torch, datasets, accelerate, trl.
    assert not {"torch", "datasets", "accelerate", "trl"} & _installed_by("maskprep", frozenset())
