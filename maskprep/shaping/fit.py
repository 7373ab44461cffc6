"""Fitting one document into ``max_length`` by the overflow policy (truncate, drop, split,
error), counting what happens to it. Every strategy fits documents this way before it makes rows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..config import ShapeConfig
from ..errors import ConfigError, DataError
from ..tokenizing.encoder import EncodedDoc, truncation_keep


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

    @classmethod
    def from_dict(cls, counts: dict[str, int]) -> ShapeStats:
        """The counts :meth:`as_dict` gave (a resumed build's, see :mod:`maskprep.resume`)."""
        return cls(**{f.name: int(counts[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class Piece:
    """A fitted slice of a document: at most ``max_length`` ids and their trained flags."""

    ids: np.ndarray
    trained: np.ndarray

    def as_list(self) -> list[list[int]]:
        """The piece as JSON lists (ids, then the trained flags as 0/1)."""
        return [self.ids.tolist(), self.trained.astype(np.int8).tolist()]

    @classmethod
    def from_list(cls, data: list[list[int]]) -> Piece:
        """The piece :meth:`as_list` gave."""
        ids, trained = data
        return cls(np.asarray(ids, dtype=np.int32), np.asarray(trained, dtype=bool))


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
