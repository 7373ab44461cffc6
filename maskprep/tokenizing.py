"""Loading a tokenizer, framing documents with special tokens, and encoding them in batches.

Documents are encoded without special tokens, then framed with the tokenizer's own prefix and
suffix (``[CLS] … [SEP]`` for BERT, ``<s> …`` for Llama), so that truncation and splitting cut the
text and keep the frame, exactly as the tokenizer's own ``truncation=True`` does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import TokenizerConfig
from .errors import ConfigError

#: Files whose bytes define a tokenizer's behaviour; hashed into the manifest.
IDENTITY_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "added_tokens.json",
)


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

    @property
    def body_length(self) -> int:
        """Number of tokens between the frame's head and tail."""
        return len(self.ids) - self.head - self.tail


@dataclass(frozen=True)
class TokenizerInfo:
    """What identifies the tokenizer a build used: enough to tell two tokenizers apart."""

    name_or_path: str
    revision: str | None
    tokenizer_class: str
    vocab_size: int
    pad_token: str
    pad_token_id: int
    eos_token: str | None
    eos_token_id: int | None
    bos_token_id: int | None
    padding_side: str
    prefix_ids: list[int]
    suffix_ids: list[int]
    fingerprint: str
    files: dict[str, str]


def load_tokenizer(config: TokenizerConfig) -> Any:
    """Load a fast tokenizer by Hub name or local directory and resolve its pad token.

    Raises :class:`ConfigError` when it cannot be loaded, is not a fast tokenizer, or has no pad
    token and none was asked for.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            config.name_or_path,
            revision=config.revision,
            trust_remote_code=config.trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load tokenizer {config.name_or_path!r}: {first}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"tokenizer {config.name_or_path!r} is not a fast (Rust) tokenizer; "
            "maskprep encodes in batches and needs one"
        )
    _resolve_pad_token(tokenizer, config)
    if config.padding_side is not None:
        tokenizer.padding_side = config.padding_side
    if config.add_eos and tokenizer.eos_token_id is None:
        raise ConfigError(f"tokenizer {config.name_or_path!r} has no EOS token to add")
    return tokenizer


def _resolve_pad_token(tokenizer: Any, config: TokenizerConfig) -> None:
    wanted = config.pad_token
    if wanted is None:
        if tokenizer.pad_token_id is None:
            raise ConfigError(
                f"tokenizer {config.name_or_path!r} has no pad token; choose one: pad with EOS "
                "(--pad-token eos) or with a token of its vocabulary (--pad-token TOKEN)"
            )
        return
    if wanted == "eos":
        if tokenizer.eos_token is None:
            raise ConfigError(f"tokenizer {config.name_or_path!r} has no EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
        return
    # A new token would need a resized embedding matrix; only reuse what the vocabulary has.
    if tokenizer.convert_tokens_to_ids(wanted) in (None, tokenizer.unk_token_id) and (
        wanted != tokenizer.unk_token
    ):
        raise ConfigError(f"pad token {wanted!r} is not in the vocabulary of the tokenizer")
    tokenizer.pad_token = wanted


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


def tokenizer_info(tokenizer: Any, config: TokenizerConfig) -> TokenizerInfo:
    """Identity of a loaded tokenizer for the manifest: ids, padding side and content hashes."""
    prefix, suffix = special_frame(tokenizer, config.add_special_tokens)
    return TokenizerInfo(
        name_or_path=config.name_or_path,
        revision=config.revision,
        tokenizer_class=type(tokenizer).__name__,
        vocab_size=len(tokenizer),
        pad_token=tokenizer.pad_token,
        pad_token_id=int(tokenizer.pad_token_id),
        eos_token=tokenizer.eos_token,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        padding_side=tokenizer.padding_side,
        prefix_ids=prefix,
        suffix_ids=suffix,
        fingerprint=_fingerprint(tokenizer),
        files=_file_hashes(config.name_or_path),
    )


def _fingerprint(tokenizer: Any) -> str:
    """sha256 of what decides the ids: the Rust tokenizer's definition, special tokens, template."""
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    # Truncation and padding state changes as a tokenizer is used; it does not change the ids.
    definition.pop("truncation", None)
    definition.pop("padding", None)
    payload = {
        "backend": definition,
        "special_tokens": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _file_hashes(name_or_path: str) -> dict[str, str]:
    directory = Path(name_or_path)
    if not directory.is_dir():
        return {}
    hashes = {}
    for name in IDENTITY_FILES:
        path = directory / name
        if path.is_file():
            hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


class Encoder:
    """Turns texts into :class:`EncodedDoc` objects with one batched call to the fast tokenizer."""

    def __init__(self, tokenizer: Any, config: TokenizerConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        prefix, suffix = special_frame(tokenizer, config.add_special_tokens)
        self.eos_id = tokenizer.eos_token_id
        # The tokenizer may already end every document with EOS (its suffix); never add a second.
        self.append_eos = config.add_eos and (not suffix or suffix[-1] != self.eos_id)
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
