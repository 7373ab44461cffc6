"""The manifest, ``maskprep.json``: written last and atomically, so that an output directory
holding one is finished, and read back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import DataError
from .names import MANIFEST_NAME
from .shards import atomic_write_bytes

MANIFEST_FORMAT = 1


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``maskprep.json`` atomically; sorted keys so equal builds give equal bytes."""
    path = directory / MANIFEST_NAME
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a finished output's manifest; a missing one means the build did not finish."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{directory}: no {MANIFEST_NAME}; the build did not finish")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: manifest is not valid JSON: {exc.msg}") from None
