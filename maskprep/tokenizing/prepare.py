"""What a build encodes with: the tokenizer's identity and its encoders, taken from the tokenizer
cache when it holds them, else loaded through transformers (and then cached)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import BuildConfig, TokenizerConfig
from ..errors import ConfigError, Option
from ..storage import StorageOptions
from .cache import CachedTokenizer, TokenizerCache
from .encoder import Encoder, EncoderSpec, appends_eos, encoder_spec
from .loading import DirectTokenizer, TokenizerInfo, load_direct, load_tokenizer, tokenizer_info
from .sft import SFTEncoder, use_chat_template_file


@dataclass(frozen=True)
class PreparedTokenizer:
    """How a build encodes: the tokenizer's identity, and either the fast path's spec or the
    transformers-backed encoders (both for a tokenizer loaded here; only the spec for a cached
    one)."""

    info: TokenizerInfo
    spec: EncoderSpec | None
    encoder: Encoder | None = None
    sft_encoder: SFTEncoder | None = None
    cached: bool = False
    #: Loaded from its tokenizer.json with ``tokenizers`` alone (:func:`~.loading.load_direct`).
    direct: bool = False


def prepare_tokenizer(
    config: BuildConfig,
    loaded: Any,
    cache: TokenizerCache | None,
    storage_options: StorageOptions | None = None,
) -> PreparedTokenizer:
    """Load what the build encodes with: from the tokenizer cache when it holds this plain-text
    build's tokenizer, else through transformers (storing it in the cache for the next build).
    ``storage_options`` configures the store of a chat template given as a URL."""
    # add_eos as the build applies it (on for packed plain documents), keyed and encoded alike.
    options = config.resolved_tokenizer
    if loaded is None and config.sft is None:
        direct = load_direct(options)
        if direct is not None:
            check_eos(config, direct.info)
            return PreparedTokenizer(direct.info, direct_spec(direct, options), direct=True)
    key = None
    if loaded is None and config.sft is None and cache is not None:
        key = cache.key(options)
        cached = cache.get(key) if key is not None else None
        if cached is not None:
            check_eos(config, cached.info)
            return PreparedTokenizer(cached.info, cached.spec, cached=True)
    tokenizer = loaded if loaded is not None else load_tokenizer(options)
    if config.sft is not None and config.sft.chat_template is not None:
        use_chat_template_file(tokenizer, config.sft.chat_template, storage_options)
    info = tokenizer_info(tokenizer, options)
    check_eos(config, info)
    encoder = Encoder(tokenizer, options)
    spec = encoder_spec(tokenizer, encoder)
    if config.sft is not None:
        sft_encoder = SFTEncoder(tokenizer, options, config.sft, spec=spec, shape=config.shape)
        return PreparedTokenizer(info, spec, encoder, sft_encoder)
    # Keyed again: a tokenizer directory rewritten while it was loading must not be cached under
    # the key of its former files.
    if cache is not None and key is not None and spec is not None:
        fresh = cache.key(options) == key
        if fresh:
            cache.put(key, CachedTokenizer(info, spec))
    return PreparedTokenizer(info, spec, encoder)


def check_eos(config: BuildConfig, info: TokenizerInfo) -> None:
    """Refuse ``add_eos`` for plain documents when the tokenizer has no EOS token to add.

    Packed documents (``add_eos`` is their default) fall back on the tokenizer's own frame: a
    tokenizer whose special tokens end every document (BERT's ``[SEP]``) keeps them apart with
    that, and nothing is appended. One that ends documents with nothing at all is refused:
    its documents would run into each other, unless ``add_eos`` is turned off on purpose.
    Supervised records check their own (:class:`~maskprep.tokenizing.sft.SFTEncoder`).
    """
    if not config.resolved_tokenizer.add_eos or info.eos_token_id is not None or config.sft:
        return
    name = config.tokenizer.name_or_path
    if config.shape.strategy != "pack":
        raise ConfigError(f"tokenizer {name!r} has no EOS token to add")
    if info.suffix_ids:
        return
    off = Option("tokenizer.add_eos", "False")
    raise ConfigError(
        f"tokenizer {name!r} has no EOS token, and its special tokens end no document: packed "
        f"documents would run into each other with nothing between them; {off} packs them so "
        "anyway",
        suggests=(off,),
    )


def direct_spec(direct: DirectTokenizer, options: TokenizerConfig) -> EncoderSpec:
    """The fast path's spec of a tokenizer loaded from its files (its backend as it is), for the
    tokenizer options as the build applies them (``BuildConfig.resolved_tokenizer``)."""
    info = direct.info
    return EncoderSpec(
        backend_json=direct.backend.to_str(),
        split_special_tokens=direct.split_special_tokens,
        prefix=tuple(info.prefix_ids),
        suffix=tuple(info.suffix_ids),
        append_eos=appends_eos(options.add_eos, info.eos_token_id, info.suffix_ids),
        eos_id=info.eos_token_id,
    )
