"""Encoding documents: the special-token frame, and texts → :class:`EncodedDoc` in batches.

Documents are encoded without special tokens, then framed with the tokenizer's own prefix and
suffix (``[CLS] … [SEP]`` for BERT, ``<s> …`` for Llama), so that truncation and splitting cut the
text and keep the frame, exactly as the tokenizer's own ``truncation=True`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import TokenizerConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class EncodedDoc:
    """One document as token ids, ready to be fitted into rows.

    ``ids`` is the whole framed document; its first ``head`` and last ``tail`` tokens are the
    special-token frame, kept whole when the text between them is truncated or split. ``trained``
    marks the tokens whose labels count in the loss. ``prompt`` is set for supervised records: the
    number of tokens right after the head that form the prompt, which truncation cuts from the
    left before it cuts the completion after it from the right.
    """

    ids: np.ndarray
    trained: np.ndarray
    head: int
    tail: int
    location: str
    prompt: int | None = None


def special_frame(tokenizer: Any, add_special_tokens: bool) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence (``([CLS], [SEP])`` for BERT).

    Found by encoding a probe text with and without special tokens, so it works for any
    post-processor without knowing its kind.
    """
    if not add_special_tokens:
        return [], []
    probe = "maskprep probe"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    framed = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(framed) - len(bare) + 1):
        if framed[start : start + len(bare)] == bare:
            return list(framed[:start]), list(framed[start + len(bare) :])
    raise ConfigError("cannot tell the tokenizer's special tokens apart from the text it frames")


class Encoder:
    """Turns texts into :class:`EncodedDoc` objects with one batched call to the fast tokenizer."""

    def __init__(self, tokenizer: Any, config: TokenizerConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        prefix, suffix = special_frame(tokenizer, config.add_special_tokens)
        self.eos_id = tokenizer.eos_token_id
        # The tokenizer may already end every document with EOS (its suffix); never add a second.
        # Without an EOS there is none to add (see prepare.check_eos).
        self.append_eos = (
            bool(config.add_eos)
            and self.eos_id is not None
            and (not suffix or suffix[-1] != self.eos_id)
        )
        #: The special-token frame put around every document (``[CLS]`` / ``[SEP]``, ``<s>``).
        self.prefix = np.asarray(prefix, dtype=np.int32)
        self.suffix = np.asarray(suffix, dtype=np.int32)

    def encode(self, texts: Sequence[str], locations: Sequence[str]) -> list[EncodedDoc]:
        """Encode a batch of texts; ``locations`` are their ``file:line`` strings."""
        encoded = self.tokenizer(
            list(texts),
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            # Long documents are expected here; fitting them to max_length is shaping's job.
            verbose=False,
        )["input_ids"]
        docs = []
        head, tail = len(self.prefix), len(self.suffix)
        for ids, location in zip(encoded, locations, strict=True):
            body = np.asarray(ids, dtype=np.int32)
            if self.append_eos and (len(body) == 0 or body[-1] != self.eos_id):
                body = np.append(body, np.int32(self.eos_id))
            full = np.concatenate((self.prefix, body, self.suffix))
            trained = np.ones(len(full), dtype=bool)
            docs.append(EncodedDoc(full, trained, head, tail, location))
        return docs
