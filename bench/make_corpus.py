"""Make a benchmark corpus of real English prose, offline: docstrings of installed Python packages.

Two shapes, both JSONL with one ``{"text": ...}`` record a line:

- ``docstrings`` (short documents): one record per module, class or function docstring;
- ``modules`` (long documents): every docstring of one module joined into one record.

Files are visited in sorted order and the unique records are repeated in order until the target
size is reached, so the same installed packages always give the same bytes. The packages on a
machine decide the text; the manifest of a build records the input's sha256.

    python bench/make_corpus.py --kind docstrings --size 10M -o /tmp/bench/short.jsonl
    python bench/make_corpus.py --kind modules --size 10M -o /tmp/bench/long.jsonl
"""

from __future__ import annotations

import argparse
import ast
import json
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

#: Docstrings shorter than this are mostly signatures and one-liners, not prose.
MIN_DOCSTRING_CHARS = 200
#: A long document is a module's docstrings joined, cut at a paragraph to at most
#: MAX_MODULE_CHARS (so that, like real long-document corpora, part of the text, not most of it,
#: falls beyond --max-length 512), and kept when it reaches MIN_MODULE_CHARS.
MIN_MODULE_CHARS = 2000
MAX_MODULE_CHARS = 4000


def _docstrings(path: Path) -> list[str]:
    """Docstrings of a module, its classes and functions, in source order."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node, clean=True)
            if text and len(text) >= MIN_DOCSTRING_CHARS:
                found.append(text)
    return found


def _first_paragraphs(text: str, limit: int) -> str:
    """The paragraphs of ``text`` that fit in ``limit`` characters (at least the first one)."""
    kept: list[str] = []
    size = 0
    for paragraph in text.split("\n\n"):
        if kept and size + len(paragraph) > limit:
            break
        kept.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(kept)


def unique_documents(root: Path, kind: str, budget: int) -> Iterator[str]:
    """Documents of ``kind`` from the ``.py`` files under ``root``, until ``budget`` bytes."""
    seen: set[str] = set()
    total = 0
    for path in sorted(root.rglob("*.py")):
        texts = _docstrings(path)
        if kind == "modules":
            joined = _first_paragraphs("\n\n".join(texts), MAX_MODULE_CHARS)
            texts = [joined] if len(joined) >= MIN_MODULE_CHARS else []
        for text in texts:
            if text in seen:
                continue
            seen.add(text)
            yield text
            total += len(text.encode("utf-8"))
            if total >= budget:
                return


def parse_size(text: str) -> int:
    """``10M``, ``512K`` or a plain byte count."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def make_corpus(output: Path, kind: str, size: int, unique: int, root: Path) -> tuple[int, int]:
    """Write ``size`` bytes (rounded up to a whole record) of ``kind`` records; return the number
    of records written and of distinct ones."""
    lines = [
        json.dumps({"text": t}, ensure_ascii=False) + "\n"
        for t in unique_documents(root, kind, unique)
    ]
    if not lines:
        raise SystemExit(f"no docstrings found under {root}")
    output.parent.mkdir(parents=True, exist_ok=True)
    written = records = 0
    with open(output, "w", encoding="utf-8") as handle:
        while written < size:
            line = lines[records % len(lines)]
            handle.write(line)
            written += len(line.encode("utf-8"))
            records += 1
    return records, len(lines)


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--kind", choices=("docstrings", "modules"), default="docstrings")
    parser.add_argument("--size", default="10M", help="target size of the file (default 10M)")
    parser.add_argument(
        "--unique", default="4M", help="distinct text collected before repeating (default 4M)"
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(sysconfig.get_paths()["purelib"]),
        help="where to look for .py files (default: site-packages)",
    )
    args = parser.parse_args()
    records, distinct = make_corpus(
        args.output, args.kind, parse_size(args.size), parse_size(args.unique), args.root
    )
    print(f"{args.output}: {records} records ({distinct} distinct), kind {args.kind}")


if __name__ == "__main__":
    main()
