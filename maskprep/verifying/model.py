"""The model under test: device, dtype, loading it (decoder or encoder, with its own code where
it has some), switching its attention implementation, and leaving a caller's model as it was."""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import platform
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..collate import ModelFacts, model_facts, model_task
from ..collate.models import check_config_sizes
from ..errors import ConfigError, first_line, one_line
from ..hub import check_local
from .options import VerifyOptions


@dataclass(frozen=True)
class Subject:
    """The model probed: the module, its name for reports, its kind (``decoder`` or
    ``encoder``), where and in which dtype it runs, and what :func:`model_facts` read from it."""

    module: Any
    name: str
    kind: str
    device: str
    dtype: str
    facts: ModelFacts


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but torch sees no CUDA device")
    return name


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


@contextmanager
def quiet_transformers(progress: bool = False) -> Iterator[None]:
    """Silence transformers' load reports and warnings (an encoder's fresh LM head is expected
    here), and its progress bars unless ``progress``; everything is put back after."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    if not progress:
        logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _kind(facts: ModelFacts, name: str) -> str:
    if facts.causal is None:
        raise ConfigError(
            f"{name}: cannot tell whether this model is a decoder or an encoder (no attention "
            "module says is_causal and there is no config to read)"
        )
    return "decoder" if facts.causal else "encoder"


def load_model(name: str, options: VerifyOptions, dtype: str, device: str) -> Subject:
    """Load ``name`` (Hub name or local directory) for probing.

    The head follows :func:`maskprep.collate.model_task`: a causal LM for decoders, a masked LM
    for encoders that have one (so the label probes have a loss), else the base model; a model
    with its own code (``auto_map``) loads through it with ``trust_remote_code``. Whether it is a
    decoder is read from the loaded modules by :func:`maskprep.collate.model_facts`.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    check_local(name, "model")
    hub = {"revision": options.revision, "trust_remote_code": options.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(name, **hub)
    except Exception as error:  # a broken config, or the model's own code, may raise anything
        raise ConfigError(f"{name}: cannot load the model config: {one_line(error)}") from None
    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(f"{config.model_type}: encoder-decoder models are not supported")
    check_config_sizes(config)
    if options.num_layers is not None:
        # Cut, never grown: a model of 10**30 layers would be built until the memory runs out.
        layers = getattr(config, "num_hidden_layers", None)
        if isinstance(layers, int) and options.num_layers > layers:
            raise ConfigError(
                f"{name}: num_layers {options.num_layers} is more than the {layers} layers it has"
            )
        config.num_hidden_layers = options.num_layers
    task = model_task(config)
    if task is None:
        raise ConfigError(
            f"{name}: transformers has no causal-LM, masked-LM or base model class for "
            f"{type(config).__name__} (model_type {config.model_type!r}); a model with its own "
            "code needs an auto_map in its config.json"
        )
    cls: Any = {"causal-lm": AutoModelForCausalLM, "masked-lm": AutoModelForMaskedLM}.get(
        task, AutoModel
    )
    torch_dtype = getattr(torch, dtype)
    try:
        if options.from_config:
            # Seeded weights, without moving the caller's global random state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(options.seed)
                model = cls.from_config(
                    config, dtype=torch_dtype, trust_remote_code=options.trust_remote_code
                )
        else:
            model = cls.from_pretrained(name, config=config, dtype=torch_dtype, **hub)
    except Exception as error:  # the model's own code may raise anything
        raise ConfigError(f"{name}: cannot load the model: {one_line(error)}") from None
    module = model.to(device).eval()
    facts = model_facts(module)
    return Subject(module, name, _kind(facts, name), device, dtype, facts)


def _placement(model: Any) -> tuple[str, str]:
    """Where a model object's parameters are, and their dtype."""
    import torch

    parameters = list(model.parameters())
    floating = [p for p in parameters if p.is_floating_point()]
    parameter = floating[0] if floating else (parameters[0] if parameters else None)
    if parameter is None:
        return "cpu", "float32"
    device = str(parameter.device)
    dtype = parameter.dtype if parameter.is_floating_point() else torch.float32
    return device, str(dtype).removeprefix("torch.")


@contextmanager
def model_under_test(model: Any, options: VerifyOptions) -> Iterator[Subject]:
    """The model to probe, and the caller's model exactly as it was afterwards.

    A Hub name or directory is loaded here. A model object runs where it is and in its own dtype
    unless ``options`` name another device or dtype, in which case a copy is converted: the
    caller's parameters, dtype, device and gradients are never changed. Its train/eval mode
    (per module) and attention implementation are switched for the probes and put back.
    """
    import torch

    if isinstance(model, (str, os.PathLike)):
        device = resolve_device(options.device)
        dtype = options.dtype
        if dtype == "auto" and device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif dtype == "auto":
            dtype = "float32"
        yield load_model(str(model), options, dtype, device)
        return
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(
            f"model must be a Hub name, a local directory or a torch module, not "
            f"{type(model).__name__}"
        )
    name = str(getattr(getattr(model, "config", None), "name_or_path", "") or "")
    name = name or type(model).__name__
    own_device, own_dtype = _placement(model)
    device = own_device if options.device == "auto" else resolve_device(options.device)
    if _same_device(device, own_device):
        device = own_device
    dtype = own_dtype if options.dtype == "auto" else options.dtype
    if device != own_device or dtype != own_dtype:
        module = copy.deepcopy(model).to(device=device, dtype=getattr(torch, dtype))
    else:
        module = model
    with _modes_kept(module):
        module.eval()
        facts = model_facts(module)
        yield Subject(module, name, _kind(facts, name), device, dtype, facts)


def _same_device(asked: str, own: str) -> bool:
    """Whether ``asked`` names the device ``own`` is (``cuda`` names any CUDA device)."""
    import torch

    wanted, have = torch.device(asked), torch.device(own)
    return wanted.type == have.type and (wanted.index is None or wanted.index == have.index)


@contextmanager
def _modes_kept(module: Any) -> Iterator[None]:
    """Put back each submodule's train/eval mode and the attention implementation on exit."""
    training = [(m, m.training) for m in module.modules()]
    implementation = current_implementation(module)
    try:
        yield
    finally:
        for child, mode in training:
            child.training = mode
        if implementation is not None and current_implementation(module) != implementation:
            with contextlib.suppress(ImportError, ValueError):
                module.set_attn_implementation(implementation)


def forward_parameters(model: Any) -> Mapping[str, inspect.Parameter] | None:
    """The parameters ``model.forward`` names; ``None`` where its signature cannot be read."""
    try:
        return inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None


def current_implementation(module: Any) -> str | None:
    """The attention implementation a model is set to, where its config says."""
    return getattr(getattr(module, "config", None), "_attn_implementation", None)


def set_implementation(model: Any, name: str, device: str, dtype: str) -> str | None:
    """Switch the model to attention ``name``; return why not, or ``None`` when done."""
    if name == "flash_attention_2":
        if not device.startswith("cuda"):
            return "flash_attention_2 needs a CUDA device"
        if dtype not in ("float16", "bfloat16"):
            return "flash_attention_2 runs only in float16 or bfloat16"
        from transformers.utils import is_flash_attn_2_available

        if not is_flash_attn_2_available():
            return "flash_attention_2 needs the flash-attn package, which is not installed"
    current = current_implementation(model)
    if current == name:
        return None
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        return f"this model object cannot switch attention (it runs {current})"
    try:
        setter(name)
    except (ImportError, ValueError) as error:
        return first_line(error)
    return None
