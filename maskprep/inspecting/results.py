"""What ``maskprep inspect`` returns: :class:`InspectResult`, the manifest's facts about the build,
and decoded rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .checks import CheckResult, failures
from .layout import Layout
from .summary import DataStats

Role = Literal["trained", "prompt", "padding"]


@dataclass(frozen=True)
class BuildFacts:
    """What the manifest says about the build that wrote the data."""

    maskprep_version: str | None
    documents_read: int | None
    documents_truncated: int | None
    documents_dropped: int | None
    documents_split: int | None
    records_rejected: int | None
    tokens_lost: int | None
    tokenizer: dict[str, Any]


@dataclass(frozen=True)
class Segment:
    """A run of one row's tokens with one role, inside one packed document (``document`` is its
    number within the row; ``None`` for padding and for unpacked rows)."""

    role: Role
    document: int | None
    ids: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class DecodedRow:
    """One row shown as decoded segments; ``index`` is its row number in the whole data."""

    index: int
    width: int
    real_tokens: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class InspectResult:
    """Everything ``maskprep inspect`` reports. ``rows_total`` rows exist; ``rows`` of them
    were inspected (fewer when sampled)."""

    source: str
    shards: tuple[str, ...]
    rows_total: int
    sampled: bool
    layout: Layout
    stats: DataStats
    build: BuildFacts | None
    checks: tuple[CheckResult, ...]
    decoded: tuple[DecodedRow, ...]
    elapsed_s: float

    def failures(self, strict: bool = False) -> list[CheckResult]:
        """Checks that failed; with ``strict``, warnings too."""
        return failures(self.checks, strict)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed), as ``maskprep inspect`` exits 0."""
        return not self.failures()

    def passes(self, strict: bool = False) -> bool:
        """True when no check failed and, with ``strict``, none warned."""
        return not self.failures(strict)
