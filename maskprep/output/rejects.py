"""``_rejects.jsonl``: every record a build rejected under the ``skip`` policy, with its file,
line, reason and raw text. Part of a finished output: published just before the manifest, and
never left by a build that did not finish."""

from __future__ import annotations

import json
from typing import Any

from .. import storage
from ..sources.records import Rejected
from .names import REJECTS_NAME


class RejectsWriter:
    """Streams rejected records to ``_rejects.jsonl`` through an atomic writer (memory stays
    flat however many there are; nothing appears under the final name before
    :meth:`publish`)."""

    def __init__(self, directory: storage.Location) -> None:
        self.location = directory.join(REJECTS_NAME)
        self._writer = storage.write(self.location)
        self._published = False

    def add(self, item: Rejected) -> None:
        """Append one rejected record."""
        record = {"file": item.source, "line": item.line, "reason": item.reason, "raw": item.raw}
        # A lone surrogate cannot be UTF-8: written as its JSON escape, which reads back as it.
        line = _one_line_json(record) + "\n"
        self._writer.write(line.encode("utf-8", errors="backslashreplace"))

    def publish(self) -> None:
        """Move the file to its final name, complete."""
        self._writer.commit()
        self._published = True

    def discard(self) -> None:
        """Throw the file away, published or not: the build it belongs to did not finish."""
        self._writer.abort()
        if self._published:
            storage.delete(self.location)


def _one_line_json(record: dict[str, Any]) -> str:
    """JSON on one line for every reader: json.dumps escapes control characters, but leaves
    U+0085, U+2028 and U+2029, which ``str.splitlines`` and some JSONL readers treat as breaks."""
    text = json.dumps(record, ensure_ascii=False)
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
