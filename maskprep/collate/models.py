"""What a collator must know about the model it feeds, read from the model's own structure.

Causal or not (the attention modules' ``is_causal``), the dtype a 4D mask must have, the attention
implementation, a RoBERTa-style position offset (a position table with a ``padding_idx``) and the
size of an absolute position table or of the vocabulary. Reading the structure rather than a list
of architectures keeps remote-code models that follow transformers' conventions covered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError, one_line
from ..hub import check_local

#: Names transformers gives an absolute position table (BERT, RoBERTa, … and GPT-2).
_POSITION_TABLES = ("position_embeddings", "wpe")
#: Config fields that give a model's context length when it has no position table (rotary,
#: ALiBi): the first one present counts.
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")

#: The head a model is loaded with: a causal LM, a masked LM, or the bare base model.
Task = Literal["causal-lm", "masked-lm", "base"]


@dataclass(frozen=True)
class ModelFacts:
    """What :func:`model_facts` read about a model.

    ``causal`` is ``None`` when neither the modules nor a config tell (a bare ``torch.nn.Module``).
    ``position_offset`` is added to every position id fed to it (RoBERTa: ``padding_idx + 1``);
    ``max_positions`` is the size of an absolute position table (``None`` for rotary or relative
    positions, which have no hard limit); ``context_positions`` is, for a model without such a
    table, the context length its config names (``max_position_embeddings`` and the like): beyond
    it the model runs, but on positions it was not trained on. ``vocab_size`` is the number of
    token embeddings.
    """

    name: str
    causal: bool | None
    dtype: str
    attn_implementation: str | None
    position_offset: int = 0
    max_positions: int | None = None
    vocab_size: int | None = None
    context_positions: int | None = None

    @property
    def absolute_positions(self) -> bool:
        """The model looks positions up in a table: they must be fed exactly."""
        return self.max_positions is not None


def model_facts(
    model: Any, *, revision: str | None = None, trust_remote_code: bool = False
) -> ModelFacts:
    """Read :class:`ModelFacts` from a model object, its config, or a Hub name / local directory.

    For a config or a name only the configuration is loaded (a name at ``revision``; a model with
    its own code, through its ``auto_map``, only with ``trust_remote_code``); the model's
    structure is built on PyTorch's meta device (no memory, no weights). Encoder-decoder models
    are refused.
    """
    import torch

    if isinstance(model, (str, os.PathLike)):
        config = _load_config(str(model), revision, trust_remote_code)
        module = None
    elif isinstance(model, torch.nn.Module):
        config, module = getattr(model, "config", None), model
    elif hasattr(model, "model_type") and hasattr(model, "to_dict"):
        config, module = model, None
    else:
        raise TypeError(
            f"model must be a model, its config or its name, not {type(model).__name__}"
        )
    if config is not None and getattr(config, "is_encoder_decoder", False):
        raise ConfigError(f"{config.model_type}: encoder-decoder models are not supported")
    dtype = _module_dtype(module) if module is not None else _config_dtype(config)
    if module is None:
        check_config_sizes(config)
        module = _skeleton(config, trust_remote_code)
    offset, max_positions = _position_table(module)
    return ModelFacts(
        name=str(getattr(config, "name_or_path", "") or type(model).__name__),
        causal=_causal(module, config),
        dtype=dtype,
        attn_implementation=getattr(
            getattr(module, "config", config), "_attn_implementation", None
        ),
        position_offset=offset,
        max_positions=max_positions,
        # The embedding table, where there is one, is the truth; the config only without one.
        vocab_size=_vocab_size(module) if module is not None else _size(config, "vocab_size"),
        context_positions=None if max_positions is not None else _context_length(config),
    )


def model_task(config: Any) -> Task | None:
    """The head to load the model of ``config`` with, or ``None`` when transformers has none.

    A config counts as a causal LM or a masked LM when transformers' task mappings hold its class,
    or its ``auto_map`` names ``AutoModelForCausalLM`` / ``AutoModelForMaskedLM`` (a model with its
    own code). Where both apply (BERT), a masked LM, unless the config says it is a decoder
    (``is_decoder``) or its ``architectures`` name only a causal LM class. Otherwise the base
    model, when transformers or the ``auto_map`` has one.
    """
    from transformers import (
        MODEL_FOR_CAUSAL_LM_MAPPING,
        MODEL_FOR_MASKED_LM_MAPPING,
        MODEL_MAPPING,
    )

    auto_map = getattr(config, "auto_map", None) or {}
    names = [str(a) for a in getattr(config, "architectures", None) or []]
    causal = type(config) in MODEL_FOR_CAUSAL_LM_MAPPING or "AutoModelForCausalLM" in auto_map
    masked = type(config) in MODEL_FOR_MASKED_LM_MAPPING or "AutoModelForMaskedLM" in auto_map
    named_causal = any(n.endswith(("ForCausalLM", "LMHeadModel")) for n in names)
    named_masked = any(n.endswith("ForMaskedLM") for n in names)
    decoder = bool(getattr(config, "is_decoder", False)) or (named_causal and not named_masked)
    if causal and (not masked or decoder):
        return "causal-lm"
    if masked:
        return "masked-lm"
    if type(config) in MODEL_MAPPING or "AutoModel" in auto_map:
        return "base"
    return None


def _load_config(name: str, revision: str | None, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    check_local(name, "model")
    try:
        return AutoConfig.from_pretrained(
            name, revision=revision, trust_remote_code=trust_remote_code
        )
    except Exception as error:  # a broken config, or the model's own code, may raise anything
        raise ConfigError(f"{name}: cannot load the model config: {one_line(error)}") from None


def check_config_sizes(config: Any) -> None:
    """Raise :class:`~maskprep.errors.ConfigError` for a config whose vocabulary or context has
    no size (``vocab_size`` -1): no model can be built from it, and the limits read from it
    would be wrong."""
    for name in ("vocab_size", *_CONTEXT_FIELDS):
        value = getattr(config, name, None)
        if value is not None and _size(config, name) is None:
            raise ConfigError(f"{_name(config)}: config {name} {value!r} is not a positive size")


def _skeleton(config: Any, trust_remote_code: bool = False) -> Any:
    """The model's module tree on the meta device, or ``None`` when transformers cannot build it
    from the config (a remote-code class not registered here, or not trusted). A config it
    cannot be built from for any other reason (sizes that make no tensor) is a
    :class:`~maskprep.errors.ConfigError`."""
    import torch
    from transformers import AutoModel

    try:
        with torch.device("meta"):
            return AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, ImportError, TypeError):
        return None
    except Exception as error:  # a broken config, or the model's own code, may raise anything
        raise ConfigError(
            f"{_name(config)}: cannot build the model from its config: {one_line(error)}"
        ) from None


def _name(config: Any) -> str:
    return str(getattr(config, "name_or_path", "") or getattr(config, "model_type", "model"))


def _module_dtype(module: Any) -> str:
    import torch

    parameter = next((p for p in module.parameters() if p.is_floating_point()), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    return str(dtype).removeprefix("torch.")


def _config_dtype(config: Any) -> str:
    # transformers 5 warns on reading ``torch_dtype``; 4.x keeps the dtype only there.
    dtype = getattr(config, "dtype", None) or vars(config).get("torch_dtype")
    name = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return name if name in ("float32", "float16", "bfloat16", "float64") else "float32"


def _causal(module: Any, config: Any) -> bool | None:
    """Any attention module with ``is_causal`` set makes the model causal; an encoder's are all
    unset. Without such modules, the config's place in transformers' task mappings decides."""
    flags = set()
    if module is not None:
        flags = {
            m.is_causal for m in module.modules() if isinstance(getattr(m, "is_causal", None), bool)
        }
    if flags:
        return True in flags
    if config is None:
        return None
    return model_task(config) == "causal-lm"


def _size(config: Any, name: str) -> int | None:
    """The config's ``name`` when it is a positive integer, else ``None``."""
    value = getattr(config, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _context_length(config: Any) -> int | None:
    sizes = (_size(config, name) for name in _CONTEXT_FIELDS)
    return next((size for size in sizes if size is not None), None)


def _position_table(module: Any) -> tuple[int, int | None]:
    """(offset, size) of the model's absolute position table; (0, None) when it has none."""
    import torch

    if module is None:
        return 0, None
    for name, child in module.named_modules():
        if type(child) is torch.nn.Embedding and name.rsplit(".", 1)[-1] in _POSITION_TABLES:
            offset = 0 if child.padding_idx is None else child.padding_idx + 1
            return offset, int(child.num_embeddings)
    return 0, None


def _vocab_size(module: Any) -> int | None:
    getter = getattr(module, "get_input_embeddings", None)
    embeddings: Any = getter() if getter is not None else None
    return int(embeddings.num_embeddings) if hasattr(embeddings, "num_embeddings") else None
