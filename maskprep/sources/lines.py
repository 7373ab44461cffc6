"""Lines of an input, each at most a fixed number of bytes, and the format sniffed from the first
of them.

A line is read with ``readline(limit)``, never whole: ``/dev/zero`` or a corrupt file without a
newline cannot make one line grow until memory runs out. A line over the limit comes out as an
:class:`Overlong` (its first bytes and size) and the rest of it is skipped, chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

#: Bytes of an over-long line kept for the rejects file.
OVERLONG_HEAD = 1024
#: How much of the start of an input the format is sniffed from (see :func:`sniff_format`).
SNIFF_LINES = 16
SNIFF_BYTES = 1 << 20
_SKIP_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Overlong:
    """A line longer than the cap: its first bytes. The rest is skipped once the reader moves on
    (so a caller that stops at it never reads the rest of an endless line)."""

    head: bytes


def capped_lines(stream: BinaryIO, limit: int) -> Iterator[bytes | Overlong]:
    """The lines of ``stream`` (each with its newline), or :class:`Overlong` for a line whose
    content (without its newline) is longer than ``limit`` bytes."""
    readline = stream.readline
    size = limit + 1  # the content and its newline
    while True:
        line = readline(size)
        if not line:
            return
        if len(line) < size or line.endswith(b"\n"):
            yield line
            continue
        yield Overlong(line[:OVERLONG_HEAD])
        while line and not line.endswith(b"\n"):
            line = readline(_SKIP_CHUNK)


def _looks_like_object(line: bytes | Overlong) -> bool:
    body = line.head if isinstance(line, Overlong) else line
    return body.lstrip().removeprefix(_BOM).lstrip().startswith(b"{")


def is_blank(line: bytes | Overlong) -> bool:
    """True for a line of whitespace only."""
    return not isinstance(line, Overlong) and not line.strip()


def sniff_format(lines: Iterable[bytes | Overlong]) -> str:
    """``"jsonl"`` or ``"text"`` for an input whose format neither the caller nor the file name
    says, from its first non-blank lines (as :func:`sample` takes them).

    The rule: JSONL when the first non-blank line starts with ``{`` (after a byte-order mark and
    spaces), or when at least half of the sampled lines do; else plain text. So one bad line does
    not decide it: a JSONL stream whose first record is corrupt is still JSONL (and that line a
    bad record, named by its number), and a text file with a line of JSON in it is still text.
    Whether a line parses is left to the reader, which names the exact problem and line.
    """
    sampled = [line for line in lines if not is_blank(line)]
    objects = sum(_looks_like_object(line) for line in sampled)
    if sampled and _looks_like_object(sampled[0]):
        return "jsonl"
    return "jsonl" if sampled and 2 * objects >= len(sampled) else "text"


def sample(lines: Iterator[bytes | Overlong]) -> list[bytes | Overlong]:
    """The first lines of ``lines`` (blank ones included) that :func:`sniff_format` needs: up to
    the first non-blank one when it starts like a JSON object (that decides it, and a stream is
    not held up), else up to :data:`SNIFF_LINES` non-blank ones or :data:`SNIFF_BYTES`; never
    past an over-long line (whose rest is not read)."""
    taken: list[bytes | Overlong] = []
    seen = size = 0
    for line in lines:
        taken.append(line)
        if isinstance(line, Overlong) or (seen == 0 and _looks_like_object(line)):
            break
        size += len(line)
        seen += not is_blank(line)
        if seen >= SNIFF_LINES or size >= SNIFF_BYTES:
            break
    return taken
