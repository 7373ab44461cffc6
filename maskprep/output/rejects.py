"""``_rejects.jsonl``: every record a build rejected under the ``skip`` policy, with its file,
line, reason and raw text. Part of a finished output (its manifest records the file's name, size
and sha256): published just before the manifest; a build that fails leaves it only to say why
(too many rejects, or none of the records usable)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import storage
from ..sources.records import Rejected
from .manifest import RejectsFile


class RejectsWriter:
    """Streams rejected records to the rejects file through an atomic writer (memory stays flat
    however many there are; nothing appears under the final name before :meth:`publish`).
    ``writer`` is the atomic writer the output gives (:meth:`maskprep.output.commit.OutputSession.
    writer`), ``publish`` publishes it."""

    def __init__(
        self,
        writer: storage.AtomicWriter,
        publish: Callable[[storage.AtomicWriter], storage.WriteResult],
    ) -> None:
        self._writer = writer
        self._publish = publish
        self.published: RejectsFile | None = None

    def add(self, item: Rejected) -> str:
        """Append one rejected record; the line written."""
        record = {"file": item.source, "line": item.line, "reason": item.reason, "raw": item.raw}
        line = _one_line_json(record) + "\n"
        self.add_lines([line])
        return line

    def add_lines(self, lines: list[str]) -> None:
        """Append lines as :meth:`add` wrote them (a resumed build's, see
        :mod:`maskprep.resume`)."""
        for line in lines:
            # A lone surrogate cannot be UTF-8: written as its JSON escape, which reads back as it.
            self._writer.write(line.encode("utf-8", errors="backslashreplace"))

    def publish(self) -> RejectsFile:
        """Move the file to its final name, complete; what the manifest records of it."""
        result = self._publish(self._writer)
        assert result.sha256 is not None, "the writer hashes every byte it publishes"
        self.published = RejectsFile(result.location.name, result.size, result.sha256)
        return self.published

    def discard(self) -> None:
        """Throw the unpublished file away (a published one stays: see :mod:`.commit`)."""
        self._writer.abort()


def _one_line_json(record: dict[str, Any]) -> str:
    """JSON on one line for every reader: json.dumps escapes control characters, but leaves
    U+0085, U+2028 and U+2029, which ``str.splitlines`` and some JSONL readers treat as breaks."""
    text = json.dumps(record, ensure_ascii=False)
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
