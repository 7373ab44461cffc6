"""Loading a tokenizer (Hub name or local directory), resolving its pad token, and the identity
the manifest records for it; and loading a local ``tokenizer.json`` with ``tokenizers`` alone
(:func:`load_direct`), where transformers would load the same tokenizer from it.

``AutoTokenizer.from_pretrained`` imports transformers and, through it, torch: about two seconds
and 200 MB on a 2-core machine before the first token, longer than a small build takes. For the
tokenizers whose loading transformers does by reading ``tokenizer.json`` as it is, maskprep reads
it itself, and a plain-text build never imports transformers.

Which those are was read in transformers 5's loader (``TokenizersBackend.__init__``,
``convert_to_native_format``, ``AutoTokenizer.from_pretrained``) and is proven by the tests, which
load every kind both ways and compare the tokenizer identity the manifest records, the ids, and
the shards:

- the class named in ``tokenizer_config.json`` is the generic one (``TokenizersBackend``,
  ``PreTrainedTokenizerFast``), which loads ``tokenizer.json`` as it is, or ``BertTokenizer``,
  which rebuilds its pipeline from its options: it is taken when ``tokenizer.json`` holds exactly
  the pipeline those options build;
- nothing transformers would change is asked for: every named special token and every entry of
  ``added_tokens_decoder`` is already an added token of ``tokenizer.json`` (transformers adds the
  missing ones), no ``add_bos_token``/``add_eos_token``/``add_prefix_space`` (they rewrite the
  post-processor or pre-tokenizer), a post-processor is present, no vocabulary over 100,000
  tokens (transformers may patch Mistral's pre-tokenizer regex), no ``config.json`` naming another
  model type, no remote code, and only settings from a known list.

Anything else — and every Hub name, and transformers outside the major version this was read in —
loads through transformers, as before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
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
        fingerprint=definition_fingerprint(
            json.loads(tokenizer.backend_tokenizer.to_str()),
            {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
            getattr(tokenizer, "chat_template", None),
        ),
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


#: The transformers major version whose loader this module mirrors.
TRANSFORMERS_MAJOR = 5

#: Named special tokens, in the order transformers lists them.
SPECIAL_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)

#: tokenizer_config.json settings that change nothing in the Rust pipeline of these classes.
NEUTRAL_SETTINGS = frozenset(
    {
        *SPECIAL_NAMES,
        "additional_special_tokens",
        "extra_special_tokens",
        "added_tokens_decoder",
        "backend",
        "chat_template",
        "clean_up_tokenization_spaces",
        "model_input_names",
        "model_max_length",
        "name_or_path",
        "padding_side",
        "processor_class",
        "split_special_tokens",
        "tokenizer_class",
        "truncation_side",
    }
)
#: BertTokenizer's own options (the pipeline is rebuilt from the first three; the rest are kept
#: in its settings only).
BERT_SETTINGS = frozenset(
    {"do_lower_case", "tokenize_chinese_chars", "strip_accents", "do_basic_tokenize", "never_split"}
)
BERT_DEFAULTS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
GENERIC_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})
#: The Mistral regex patch applies above this vocabulary size.
PATCHED_VOCABULARY = 100_000


@dataclass(frozen=True)
class DirectTokenizer:
    """A tokenizer loaded from its files: its Rust backend and the identity transformers would
    give it."""

    info: TokenizerInfo
    backend: Any
    split_special_tokens: bool


def load_direct(config: TokenizerConfig) -> DirectTokenizer | None:
    """The tokenizer of ``config`` from its ``tokenizer.json``, or ``None`` when it must load
    through transformers (see the module docstring); also ``None`` when the pad token cannot be
    resolved, so that transformers' path reports the problem."""
    if config.trust_remote_code or not _transformers_major_is_known():
        return None
    root = Path(config.name_or_path)
    try:
        settings = _json(root / "tokenizer_config.json")
        definition_text = (root / "tokenizer.json").read_text(encoding="utf-8")
        definition = json.loads(definition_text)
        model_config = _json(root / "config.json") if (root / "config.json").is_file() else {}
    except (OSError, ValueError):
        return None
    if not isinstance(settings, dict) or not isinstance(definition, dict):
        return None
    class_name = settings.get("tokenizer_class")
    bert = class_name in ("BertTokenizer", "BertTokenizerFast")
    if class_name not in GENERIC_CLASSES and not bert:
        return None
    allowed = NEUTRAL_SETTINGS | (BERT_SETTINGS if bert else frozenset())
    if set(settings) - allowed or "auto_map" in model_config:
        return None
    if isinstance(model_config, dict) and model_config.get("tokenizer_class"):
        return None
    model_type = model_config.get("model_type") if isinstance(model_config, dict) else None
    if model_type is not None and not (bert and model_type == "bert"):
        return None
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_str(definition_text)
    except Exception:  # transformers will say what is wrong with it
        return None
    backend.no_truncation()
    backend.no_padding()
    special = _special_tokens(root, settings, definition, bert)
    if special is None or not _as_transformers_builds(backend, definition, settings, special, bert):
        return None
    special = _with_pad(special, config, backend, definition)
    template = _chat_template(root, settings)
    if special is None or template is ...:
        return None
    return DirectTokenizer(
        info=_info(config, definition, settings, special, backend, template, bert),
        backend=backend,
        split_special_tokens=bool(settings.get("split_special_tokens", False)),
    )


def _transformers_major_is_known() -> bool:
    try:
        major = int(version("transformers").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return False
    return major == TRANSFORMERS_MAJOR


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _content(value: Any) -> str | None:
    """A special token's text, given as a string or as an AddedToken's fields."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) or value is None else None


def _special_tokens(
    root: Path, settings: dict, definition: dict, bert: bool
) -> dict[str, str] | None:
    """The named special tokens as transformers resolves them: tokenizer_config.json, then
    special_tokens_map.json, then the class's defaults and the padding of tokenizer.json;
    ``None`` where the two files disagree."""
    mapped: dict[str, Any] = {}
    if (root / "special_tokens_map.json").is_file():
        try:
            mapped = _json(root / "special_tokens_map.json")
        except (OSError, ValueError):
            return None
        if not isinstance(mapped, dict):
            return None
    special: dict[str, str] = {}
    for name in SPECIAL_NAMES:
        ours, theirs = _content(settings.get(name)), _content(mapped.get(name))
        if name in settings and name in mapped and ours != theirs:
            return None
        value = ours if name in settings else theirs
        if name not in settings and name not in mapped and bert:
            value = BERT_DEFAULTS.get(name)
        if value is not None:
            special[name] = value
    padding = definition.get("padding")
    if "pad_token" not in settings and "pad_token" not in mapped and padding:
        pad = padding.get("pad_token")
        if isinstance(pad, str):
            special["pad_token"] = pad
    return special


def _as_transformers_builds(
    backend: Any, definition: dict, settings: dict, special: dict[str, str], bert: bool
) -> bool:
    """Whether transformers would leave this backend's pipeline as ``tokenizer.json`` has it."""
    if definition.get("post_processor") is None:
        return False
    added = {t["content"]: t for t in definition.get("added_tokens") or []}
    for name, token in special.items():
        if token not in added or (name != "pad_token" and not added[token].get("special")):
            return False
    extra = settings.get("extra_special_tokens") or settings.get("additional_special_tokens") or []
    if not isinstance(extra, list) or any(_content(t) not in added for t in extra):
        return False
    for index, token in (settings.get("added_tokens_decoder") or {}).items():
        found = added.get(_content(token) or "")
        if found is None or found["id"] != int(index):
            return False
        if isinstance(token, dict) and any(
            key in found and token[key] != found[key] for key in token if key != "__type"
        ):
            return False
    if backend.get_vocab_size(with_added_tokens=False) > PATCHED_VOCABULARY:
        return False
    return not bert or _bert_pipeline_matches(backend, definition, settings, special)


def _bert_pipeline_matches(backend: Any, definition: dict, settings: dict, special: dict) -> bool:
    """Whether ``tokenizer.json`` holds the pipeline BertTokenizer builds from its options."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    model = definition.get("model") or {}
    if model.get("type") != "WordPiece":
        return False
    cls, sep, unk = special.get("cls_token"), special.get("sep_token"), special.get("unk_token")
    if cls is None or sep is None or unk is None:
        return False
    expected = Tokenizer(WordPiece(model.get("vocab") or {}, unk_token=unk))
    expected.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
        strip_accents=settings.get("strip_accents"),
        lowercase=settings.get("do_lower_case", True),
    )
    expected.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    expected.decoder = decoders.WordPiece(prefix="##")
    cls_id, sep_id = backend.token_to_id(cls), backend.token_to_id(sep)
    if cls_id is None or sep_id is None:
        return False
    expected.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, cls_id), (sep, sep_id)],
    )
    built = json.loads(expected.to_str())
    return all(
        built[part] == definition.get(part)
        for part in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "model")
    )


def _with_pad(
    special: dict[str, str], config: TokenizerConfig, backend: Any, definition: dict
) -> dict[str, str] | None:
    """``special`` with the pad token ``config`` asks for (see ``load_tokenizer``); ``None`` for
    a pad token transformers' path must judge (missing, or not an added token already)."""
    wanted = config.pad_token
    if wanted is None:
        return special if "pad_token" in special else None
    if wanted == "eos":
        return {**special, "pad_token": special["eos_token"]} if "eos_token" in special else None
    added = {t["content"] for t in definition.get("added_tokens") or []}
    return {**special, "pad_token": wanted} if wanted in added else None


def _chat_template(root: Path, settings: dict) -> Any:
    """The chat template transformers reads: chat_template.jinja, chat_template.json, or the
    setting; ``...`` when it would read more (named templates)."""
    if (root / "additional_chat_templates").is_dir():
        return ...
    if (root / "chat_template.jinja").is_file():
        return (root / "chat_template.jinja").read_text(encoding="utf-8")
    if (root / "chat_template.json").is_file():
        return ...
    template = settings.get("chat_template")
    return template if template is None or isinstance(template, str) else ...


def _info(
    config: TokenizerConfig,
    definition: dict,
    settings: dict,
    special: dict[str, str],
    backend: Any,
    template: Any,
    bert: bool,
) -> TokenizerInfo:
    """The identity transformers' tokenizer would record (see ``tokenizer_info``)."""

    class _Framer:
        """Enough of a tokenizer for :func:`special_frame`."""

        def __call__(self, text: str, add_special_tokens: bool) -> dict[str, list[int]]:
            return {"input_ids": backend.encode(text, add_special_tokens=add_special_tokens).ids}

    prefix, suffix = special_frame(_Framer(), config.add_special_tokens)
    padding = definition.get("padding") or {}
    side = settings.get("padding_side") or str(padding.get("direction") or "right").lower()
    if config.padding_side is not None:
        side = config.padding_side
    ids = {name: backend.token_to_id(token) for name, token in special.items()}
    return TokenizerInfo(
        name_or_path=config.name_or_path,
        revision=config.revision,
        tokenizer_class="BertTokenizer" if bert else "TokenizersBackend",
        vocab_size=backend.get_vocab_size(with_added_tokens=True),
        pad_token=special["pad_token"],
        pad_token_id=int(ids["pad_token"]),
        eos_token=special.get("eos_token"),
        eos_token_id=ids.get("eos_token"),
        bos_token_id=ids.get("bos_token"),
        padding_side=side,
        prefix_ids=prefix,
        suffix_ids=suffix,
        fingerprint=definition_fingerprint(definition, special, template),
        files=tokenizer_file_hashes(config.name_or_path),
        model_max_length=real_model_max_length(settings.get("model_max_length")),
    )
