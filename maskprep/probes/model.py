"""The model under test: device, dtype, loading it (decoder or encoder), and switching its
attention implementation."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ConfigError, first_line
from .options import VerifyOptions


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but torch sees no CUDA device")
    return name


def resolve_dtype(name: str, device: str) -> str:
    import torch

    if name != "auto":
        return name
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports (an encoder's fresh LM head is expected here)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def model_kind(config: Any) -> str:
    """``decoder`` (causal LM) or ``encoder``; encoder-decoder models are refused."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_MASKED_LM_MAPPING

    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(f"{config.model_type}: encoder-decoder models are not supported")
    causal = type(config) in MODEL_FOR_CAUSAL_LM_MAPPING
    masked = type(config) in MODEL_FOR_MASKED_LM_MAPPING
    if causal and (not masked or getattr(config, "is_decoder", False)):
        return "decoder"
    return "encoder"


def load_model(name: str, options: VerifyOptions, dtype: str, device: str) -> tuple[Any, str]:
    """Load ``name`` (Hub name or local directory) for probing; return the model and its kind.

    Decoders load as causal LMs; encoders as masked LMs when their architecture has one (so the
    label probe has a loss), else as the base model.
    """
    import torch
    from transformers import (
        MODEL_FOR_MASKED_LM_MAPPING,
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
    )

    hub = {"revision": options.revision, "trust_remote_code": options.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(name, **hub)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{name}: cannot load the model config: {first_line(error)}") from None
    if options.num_layers is not None:
        config.num_hidden_layers = options.num_layers
    kind = model_kind(config)
    if kind == "decoder":
        cls: Any = AutoModelForCausalLM
    else:
        cls = AutoModelForMaskedLM if type(config) in MODEL_FOR_MASKED_LM_MAPPING else AutoModel
    torch_dtype = getattr(torch, dtype)
    with _quiet_transformers():
        try:
            if options.from_config:
                torch.manual_seed(options.seed)
                model = cls.from_config(
                    config, dtype=torch_dtype, trust_remote_code=options.trust_remote_code
                )
            else:
                model = cls.from_pretrained(name, config=config, dtype=torch_dtype, **hub)
        except (OSError, ValueError) as error:
            raise ConfigError(f"{name}: cannot load the model: {first_line(error)}") from None
    return model.to(device).eval(), kind


def set_implementation(model: Any, name: str, device: str, dtype: str) -> str | None:
    """Switch the model to attention ``name``; return why not, or ``None`` when done."""
    if name == "flash_attention_2":
        if device != "cuda":
            return "flash_attention_2 needs a CUDA device"
        if dtype not in ("float16", "bfloat16"):
            return "flash_attention_2 runs only in float16 or bfloat16"
        from transformers.utils import is_flash_attn_2_available

        if not is_flash_attn_2_available():
            return "flash_attention_2 needs the flash-attn package, which is not installed"
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        current = getattr(getattr(model, "config", None), "_attn_implementation", None)
        if current == name:
            return None
        return f"this model object cannot switch attention (it runs {current})"
    try:
        setter(name)
    except (ImportError, ValueError) as error:
        return first_line(error)
    return None
