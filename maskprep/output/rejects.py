"""``_rejects.jsonl``: every record a build rejected under the ``skip`` policy, with its file,
line, reason and raw text. Part of a finished output: published just before the manifest, and
never left by a build that did not finish."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..sources.records import Rejected
from .names import REJECTS_NAME, TMP_PREFIX


class RejectsWriter:
    """Streams rejected records to ``_rejects.jsonl`` under a temporary name (memory stays flat
    however many there are), published atomically at the end."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / REJECTS_NAME
        self._tmp = directory / (TMP_PREFIX + REJECTS_NAME)
        self._handle = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in publish
        self._published = False

    def add(self, item: Rejected) -> None:
        """Append one rejected record."""
        record = {"file": item.source, "line": item.line, "reason": item.reason, "raw": item.raw}
        self._handle.write(_one_line_json(record) + "\n")

    def publish(self) -> None:
        """Flush, fsync and move the file to its final name."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp, self.path)
        self._published = True

    def discard(self) -> None:
        """Close and remove the file, published or not: the build it belongs to did not
        finish."""
        self._handle.close()
        self._tmp.unlink(missing_ok=True)
        if self._published:
            self.path.unlink(missing_ok=True)


def _one_line_json(record: dict[str, Any]) -> str:
    """JSON on one line for every reader: json.dumps escapes control characters, but leaves
    U+0085, U+2028 and U+2029, which ``str.splitlines`` and some JSONL readers treat as breaks."""
    text = json.dumps(record, ensure_ascii=False)
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
