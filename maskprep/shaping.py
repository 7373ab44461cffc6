"""From encoded documents to rows: fitting overlong documents, then padding.

A padded row of ``max_length`` 6 holding a 4-token document, right and left padded (P = pad id)::

    right:  input_ids [c a t s P P]   attention_mask [1 1 1 1 0 0]   labels [c a t s -100 -100]
    left:   input_ids [P P c a t s]   attention_mask [0 0 1 1 1 1]   labels [-100 -100 c a t s]

Labels come from positions (the mask and the document's trained span), never from comparing ids
with the pad id: with ``pad_token == eos_token`` that would also hide every real EOS.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa

from . import columns
from .columns import IGNORE_INDEX
from .config import ShapeConfig
from .errors import ConfigError, DataError
from .tokenizing import EncodedDoc


@dataclass
class ShapeStats:
    """Counts of what fitting did to documents; every document lands in exactly one outcome:
    written (whole, truncated or split) or dropped."""

    documents_written: int = 0
    documents_truncated: int = 0
    tokens_truncated: int = 0
    documents_dropped: int = 0
    tokens_dropped: int = 0
    documents_split: int = 0
    rows_from_splits: int = 0
    # Supervised records only: truncation cuts the prompt from the left, then the completion
    # from the right.
    prompts_truncated: int = 0
    prompt_tokens_truncated: int = 0
    completions_truncated: int = 0
    completion_tokens_truncated: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict for the manifest."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Piece:
    """A fitted slice of a document: at most ``max_length`` ids and their trained flags."""

    ids: np.ndarray
    trained: np.ndarray


@dataclass(frozen=True)
class RowBatch:
    """Rows as flat Arrow-ready arrays: row ``i`` spans ``offsets[i]:offsets[i + 1]``."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    length: np.ndarray
    extra: dict[str, pa.Array] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        """Number of rows in the batch."""
        return len(self.length)

    def to_arrow(self) -> pa.RecordBatch:
        """The batch as an Arrow record batch following :func:`maskprep.columns.schema`."""
        offsets = pa.array(self.offsets, type=pa.int32())
        arrays = {
            columns.INPUT_IDS: pa.ListArray.from_arrays(offsets, pa.array(self.input_ids)),
            columns.ATTENTION_MASK: pa.ListArray.from_arrays(
                offsets, pa.array(self.attention_mask)
            ),
            columns.LABELS: pa.ListArray.from_arrays(offsets, pa.array(self.labels)),
            columns.LENGTH: pa.array(self.length, type=pa.int32()),
            **self.extra,
        }
        schema = columns.schema(packed=columns.POSITION_IDS in self.extra)
        return pa.RecordBatch.from_arrays([arrays[f.name] for f in schema], schema=schema)


def check_room(config: ShapeConfig, frame_tokens: int) -> None:
    """Fail early when ``max_length`` leaves no room for text inside the special-token frame."""
    budget = config.max_length - frame_tokens
    if budget < 1:
        raise ConfigError(
            f"max_length {config.max_length} leaves no room for text: the tokenizer adds "
            f"{frame_tokens} special tokens to every document"
        )
    if config.overflow == "split" and config.stride >= budget:
        raise ConfigError(
            f"stride {config.stride} must be smaller than the {budget} text tokens a window holds"
        )


def truncation_keep(doc: EncodedDoc, max_length: int) -> tuple[np.ndarray, int]:
    """Indices of ``doc`` kept when truncating it to ``max_length``, and how many prompt tokens
    were cut from the left.

    The frame is kept whole. A supervised record (``doc.prompt`` set) loses its prompt from the
    left first, keeping the completion that carries the loss; only when the completion alone is
    too long is it cut from the right. A plain document is cut from the right.
    """
    n = len(doc.ids)
    budget = max_length - doc.head - doc.tail
    body_end = n - doc.tail
    excess = max(0, n - max_length)
    cut_left = min(excess, doc.prompt or 0)
    start = doc.head + cut_left
    keep = np.r_[0 : doc.head, start : min(start + budget, body_end), body_end:n]
    return keep, cut_left


def loses_all_labels(doc: EncodedDoc, config: ShapeConfig) -> bool:
    """Whether :func:`fit` would write ``doc`` with no trained token left (only truncation can)."""
    if len(doc.ids) <= config.max_length or config.overflow != "truncate":
        return not doc.trained.any()
    keep, _ = truncation_keep(doc, config.max_length)
    return not doc.trained[keep].any()


def fit(doc: EncodedDoc, config: ShapeConfig, stats: ShapeStats) -> list[Piece]:
    """Fit one document into ``max_length`` by the overflow policy; count what happens to it.

    The special-token frame (``doc.head`` and ``doc.tail`` tokens) is kept on every piece; the text
    between is truncated (see :func:`truncation_keep`), or split into windows sharing ``stride``
    tokens.
    """
    n = len(doc.ids)
    limit = config.max_length
    if n <= limit:
        stats.documents_written += 1
        return [Piece(doc.ids, doc.trained)]
    if config.overflow == "error":
        raise DataError(f"{doc.location}: document is {n} tokens, longer than max_length {limit}")
    if config.overflow == "drop":
        stats.documents_dropped += 1
        stats.tokens_dropped += n
        return []
    budget = limit - doc.head - doc.tail
    body_end = n - doc.tail
    if config.overflow == "truncate":
        stats.documents_written += 1
        stats.documents_truncated += 1
        stats.tokens_truncated += n - limit
        keep, cut_left = truncation_keep(doc, limit)
        if doc.prompt is not None:
            cut_right = n - limit - cut_left
            stats.prompts_truncated += int(cut_left > 0)
            stats.prompt_tokens_truncated += cut_left
            stats.completions_truncated += int(cut_right > 0)
            stats.completion_tokens_truncated += cut_right
        return [Piece(doc.ids[keep], doc.trained[keep])]
    step = budget - config.stride
    pieces = []
    for start in range(doc.head, body_end, step):
        stop = min(start + budget, body_end)
        keep = np.r_[0 : doc.head, start:stop, body_end:n]
        pieces.append(Piece(doc.ids[keep], doc.trained[keep]))
        if stop == body_end:
            break
    stats.documents_written += 1
    stats.documents_split += 1
    stats.rows_from_splits += len(pieces)
    return pieces


def pad_rows(pieces: Sequence[Piece], max_length: int, pad_id: int, padding_side: str) -> RowBatch:
    """Pad pieces into rows of exactly ``max_length``; vectorised over the whole batch."""
    n = len(pieces)
    lengths = np.fromiter((len(p.ids) for p in pieces), dtype=np.int64, count=n)
    total = int(lengths.sum())
    flat_ids = np.concatenate([p.ids for p in pieces]) if n else np.empty(0, np.int32)
    flat_trained = np.concatenate([p.trained for p in pieces]) if n else np.empty(0, bool)
    # Scatter every real token to (row, column) in one assignment.
    rows = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    first_col = np.zeros(n, np.int64) if padding_side == "right" else max_length - lengths
    cols = np.arange(total) - np.repeat(starts, lengths) + np.repeat(first_col, lengths)

    input_ids = np.full((n, max_length), pad_id, dtype=np.int32)
    attention_mask = np.zeros((n, max_length), dtype=np.int8)
    labels = np.full((n, max_length), IGNORE_INDEX, dtype=np.int32)
    input_ids[rows, cols] = flat_ids
    attention_mask[rows, cols] = 1
    labels[rows, cols] = np.where(flat_trained, flat_ids, IGNORE_INDEX)
    return RowBatch(
        input_ids=input_ids.ravel(),
        attention_mask=attention_mask.ravel(),
        labels=labels.ravel(),
        offsets=np.arange(n + 1, dtype=np.int32) * max_length,
        length=lengths.astype(np.int32),
    )


class PadShaper:
    """The ``pad`` strategy: one row per piece, every row exactly ``max_length`` long."""

    def __init__(self, config: ShapeConfig, pad_id: int, padding_side: str) -> None:
        self.config = config
        self.pad_id = pad_id
        self.padding_side = padding_side
        self.stats = ShapeStats()

    def shape(self, docs: Sequence[EncodedDoc]) -> Iterator[RowBatch]:
        """Fit and pad a batch of documents; yields at most one batch of rows."""
        pieces = [piece for doc in docs for piece in fit(doc, self.config, self.stats)]
        if pieces:
            yield pad_rows(pieces, self.config.max_length, self.pad_id, self.padding_side)

    def finish(self) -> Iterator[RowBatch]:
        """Rows still held back at the end of the input (none for padding)."""
        return iter(())
