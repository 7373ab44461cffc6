"""What a build encodes with: the tokenizer's identity and its encoders, taken from the tokenizer
cache when it holds them, else loaded through transformers (and then cached)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import BuildConfig
from ..storage import StorageOptions
from .cache import CachedTokenizer, TokenizerCache
from .direct import DirectTokenizer, load_direct
from .encoder import Encoder
from .fast import EncoderSpec, encoder_spec
from .loading import TokenizerInfo, load_tokenizer, tokenizer_info
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
    #: Loaded from its tokenizer.json with ``tokenizers`` alone (:mod:`.direct`).
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
    if loaded is None and config.sft is None:
        direct = load_direct(config.tokenizer)
        if direct is not None:
            return PreparedTokenizer(direct.info, direct_spec(direct, config), direct=True)
    key = None
    if loaded is None and config.sft is None and cache is not None:
        key = cache.key(config.tokenizer)
        cached = cache.get(key) if key is not None else None
        if cached is not None:
            return PreparedTokenizer(cached.info, cached.spec, cached=True)
    tokenizer = loaded if loaded is not None else load_tokenizer(config.tokenizer)
    if config.sft is not None and config.sft.chat_template is not None:
        use_chat_template_file(tokenizer, config.sft.chat_template, storage_options)
    info = tokenizer_info(tokenizer, config.tokenizer)
    encoder = Encoder(tokenizer, config.tokenizer)
    spec = encoder_spec(tokenizer, encoder)
    if config.sft is not None:
        sft_encoder = SFTEncoder(
            tokenizer, config.tokenizer, config.sft, spec=spec, shape=config.shape
        )
        return PreparedTokenizer(info, spec, encoder, sft_encoder)
    # Keyed again: a tokenizer directory rewritten while it was loading must not be cached under
    # the key of its former files.
    if cache is not None and key is not None and spec is not None:
        fresh = cache.key(config.tokenizer) == key
        if fresh:
            cache.put(key, CachedTokenizer(info, spec))
    return PreparedTokenizer(info, spec, encoder)


def direct_spec(direct: DirectTokenizer, config: BuildConfig) -> EncoderSpec:
    """The fast path's spec of a tokenizer loaded from its files (its backend as it is)."""
    info = direct.info
    suffix = tuple(info.suffix_ids)
    eos = info.eos_token_id
    return EncoderSpec(
        backend_json=direct.backend.to_str(),
        split_special_tokens=direct.split_special_tokens,
        prefix=tuple(info.prefix_ids),
        suffix=suffix,
        append_eos=bool(config.tokenizer.add_eos) and (not suffix or suffix[-1] != eos),
        eos_id=eos,
    )
