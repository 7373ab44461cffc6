"""Loading a tokenizer (Hub name or local directory), resolving its pad token, and the identity
the manifest records for it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TokenizerConfig
from ..errors import ConfigError, Option, one_line
from ..hub import check_local
from .encoder import special_frame

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
#: transformers gives a tokenizer without a known limit ``int(1e30)`` (``VERY_LARGE_INTEGER``);
#: no model has anywhere near this many positions.
UNSET_MODEL_MAX_LENGTH = 10**18


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
    #: The tokenizer's ``model_max_length`` where it sets one (``None``: unset).
    model_max_length: int | None = None


def load_tokenizer(config: TokenizerConfig) -> Any:
    """Load a fast tokenizer by Hub name or local directory and resolve its pad token.

    Raises :class:`ConfigError` when it cannot be loaded, is not a fast tokenizer, or has no pad
    token and none was asked for. Whether it has the EOS a build appends is the build's check
    (:func:`~maskprep.tokenizing.prepare.check_eos`).
    """
    tokenizer = from_pretrained(config.name_or_path, config.revision, config.trust_remote_code)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"tokenizer {config.name_or_path!r} is not a fast (Rust) tokenizer; "
            "maskprep encodes in batches and needs one"
        )
    _resolve_pad_token(tokenizer, config)
    if config.padding_side is not None:
        tokenizer.padding_side = config.padding_side
    return tokenizer


def from_pretrained(name_or_path: str, revision: str | None, trust_remote_code: bool) -> Any:
    """``AutoTokenizer.from_pretrained`` with every way it can fail as one
    :class:`~maskprep.errors.ConfigError`: a local path that is not there, a broken
    ``tokenizer.json``, remote code that raises, a Hub name that cannot be reached."""
    check_local(name_or_path, "tokenizer")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            name_or_path, revision=revision, trust_remote_code=trust_remote_code
        )
    except Exception as exc:  # it runs the tokenizer's own files and code: anything can fail
        raise ConfigError(f"cannot load tokenizer {name_or_path!r}: {one_line(exc)}") from None


def _resolve_pad_token(tokenizer: Any, config: TokenizerConfig) -> None:
    wanted = config.pad_token
    if wanted is None:
        if tokenizer.pad_token_id is None:
            eos = Option("tokenizer.pad_token", "eos")
            token = Option("tokenizer.pad_token", "TOKEN")
            raise ConfigError(
                f"tokenizer {config.name_or_path!r} has no pad token; choose one: pad with EOS "
                f"({eos}) or with a token of its vocabulary ({token})",
                suggests=(eos, token),
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
        files=tokenizer_file_hashes(config.name_or_path),
        model_max_length=real_model_max_length(getattr(tokenizer, "model_max_length", None)),
    )


def real_model_max_length(value: Any) -> int | None:
    """A tokenizer's ``model_max_length``, or ``None`` where it is unset (transformers then holds
    a huge sentinel) or not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not 0 < value < UNSET_MODEL_MAX_LENGTH or value != int(value):
        return None
    return int(value)


def _fingerprint(tokenizer: Any) -> str:
    """sha256 of what decides the ids: the Rust tokenizer's definition, special tokens, template."""
    return definition_fingerprint(
        json.loads(tokenizer.backend_tokenizer.to_str()),
        {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
        getattr(tokenizer, "chat_template", None),
    )


def definition_fingerprint(
    definition: dict[str, Any], special_tokens: dict[str, str], chat_template: Any
) -> str:
    """sha256 of a tokenizer's Rust definition (``tokenizer.json``'s object), its named special
    tokens and its chat template."""
    # Truncation and padding state changes as a tokenizer is used; it does not change the ids.
    definition = {k: v for k, v in definition.items() if k not in ("truncation", "padding")}
    payload = {
        "backend": definition,
        "special_tokens": dict(sorted(special_tokens.items())),
        "chat_template": chat_template,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def tokenizer_file_hashes(name_or_path: str) -> dict[str, str]:
    """sha256 of each identity file of a local tokenizer directory (empty for a Hub name)."""
    directory = Path(name_or_path)
    if not directory.is_dir():
        return {}
    hashes = {}
    for name in IDENTITY_FILES:
        path = directory / name
        if path.is_file():
            hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes
