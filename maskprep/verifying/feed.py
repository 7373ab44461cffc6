"""A collate function under test (``verify --collate SPEC``): loading it from its SPEC, handing it
rows as a trainer hands them, and checking that what it returns is something a model can be fed.

A SPEC is ``path/to/file.py:NAME`` or ``package.module:NAME``; ``NAME`` (dotted for an attribute
of an attribute) is a collate function, what ``DataLoader(collate_fn=)`` and
``Trainer(data_collator=)`` take: a list of row dicts → a dict of model keyword arguments. A file
is loaded as ``python file.py`` would load it (its folder first on ``sys.path`` while it runs), so
it need not be importable; a module is imported (one of the working directory that
is not on ``sys.path`` is loaded as its file). Every failure to load or call it is
one line naming the SPEC (:class:`~maskprep.errors.ConfigError`, exit 2). Each batch it returns
is laid out against the output's rows (:mod:`.fed_checks`) and its positions held to the
model's table before the probes run on it.

Which columns the function is handed (:data:`~maskprep.verifying.options.COLLATE_COLUMNS`):

- ``forward``: what ``transformers.Trainer`` hands its ``data_collator`` at its defaults
  (``remove_unused_columns=True``): the columns ``model.forward`` names, and ``label``,
  ``label_ids`` and ``labels``. ``seq_lens`` and ``length`` are then gone.
- ``all``: every column of the output, as a plain ``DataLoader`` (or a trainer with
  ``remove_unused_columns=False``) hands them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..collate import Collator, RowArrays, row_arrays
from ..collate.models import ModelFacts
from ..errors import ConfigError, DataError, MaskprepError, one_line
from .fed_checks import FedBatch, Misplaced, fed_arrays, lay_out
from .model import forward_parameters
from .sampling import with_labels

if TYPE_CHECKING:
    import pyarrow as pa

#: Rows in tables with their indices in the data (what ``Sample.chunks`` gives).
Chunks = Callable[[int], Iterator[tuple["pa.Table", list[int]]]]

#: Which columns a collate function is handed (see the module notes; the names are
#: :data:`~maskprep.verifying.options.COLLATE_COLUMNS`).
Handed = Literal["forward", "all"]
#: The label columns ``transformers.Trainer`` keeps besides what ``forward`` names.
TRAINER_LABELS = ("label", "label_ids", "labels")
#: Keyword arguments a feed may give as plain Python values rather than tensors.
_SCALARS = (bool, int, float, type(None))


@dataclass(frozen=True)
class CollateFeed:
    """A collate function and how it is handed rows: ``name`` names it in every message (its SPEC,
    or its qualified name), ``handed`` is which columns it gets (see the module notes)."""

    function: Callable[[list[dict[str, Any]]], Any]
    name: str
    handed: Handed = "forward"


def collate_feed(collate: Any, handed: Handed = "forward") -> CollateFeed:
    """A :class:`CollateFeed` from a SPEC string (loaded with :func:`load_collate`), a callable, or
    a :class:`CollateFeed` (returned as it is)."""
    if isinstance(collate, CollateFeed):
        return collate
    if isinstance(collate, str):
        return CollateFeed(load_collate(collate), collate, handed)
    name = getattr(collate, "__qualname__", None) or type(collate).__name__
    _check_callable(collate, name)
    return CollateFeed(collate, name, handed)


def load_collate(spec: str) -> Callable[..., Any]:
    """The collate function a SPEC names (see the module notes); one-line
    :class:`~maskprep.errors.ConfigError` naming the SPEC when it cannot be had."""
    where, colon, name = spec.rpartition(":")
    if not colon or not where or not name:
        raise ConfigError(
            f"collate {spec!r}: give path/to/file.py:NAME or package.module:NAME, NAME a collate "
            "function (a list of row dicts -> a dict of model keyword arguments)"
        )
    is_file = where.endswith(".py") or os.sep in where or "/" in where or os.path.isfile(where)
    module = _load_file(spec, where) if is_file else _import(spec, where)
    value: Any = module
    for part in name.split("."):
        if not hasattr(value, part):
            raise ConfigError(f"collate {spec}: {where} has no {name!r}")
        value = getattr(value, part)
    _check_callable(value, spec)
    return value


def _check_callable(value: Any, name: str) -> None:
    if isinstance(value, type):
        raise ConfigError(
            f"collate {name}: {value.__name__} is a class; name an instance or a function "
            f"(collate = {value.__name__}(...) in the file)"
        )
    if not callable(value):
        raise ConfigError(
            f"collate {name}: is a {type(value).__name__}, not a function of a list of rows"
        )


def _load_file(spec: str, where: str) -> Any:
    """Run the file as a module of its own (its folder first on ``sys.path`` while it runs, as
    ``python file.py`` has it), registered under a name no other file gets: classes and
    dataclasses defined in it need their module in ``sys.modules``."""
    path = Path(where).expanduser()
    if not path.is_file():
        raise ConfigError(f"collate {spec}: no such file: {where}")
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    module_name = f"_maskprep_collate_{digest}"
    found = importlib.util.spec_from_file_location(module_name, resolved)
    if found is None or found.loader is None:
        raise ConfigError(f"collate {spec}: cannot load {where} as Python")
    module = importlib.util.module_from_spec(found)
    sys.modules[module_name] = module
    sys.path.insert(0, str(resolved.parent))
    try:
        found.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules[module_name]
        raise ConfigError(
            f"collate {spec}: {where}:{error.lineno}: SyntaxError: {error.msg}"
        ) from None
    except (Exception, SystemExit) as error:  # the file's own code may raise anything
        del sys.modules[module_name]
        raise ConfigError(
            f"collate {spec}: loading {where} raised {_raised(error, resolved)}"
        ) from None
    finally:
        if str(resolved.parent) in sys.path:  # the file's own code may have taken it out
            sys.path.remove(str(resolved.parent))
    return module


def _import(spec: str, where: str) -> Any:
    try:
        return importlib.import_module(where)
    except (Exception, SystemExit) as error:  # the module's own code may raise anything
        missing = error.name if isinstance(error, ModuleNotFoundError) else None
        if missing is not None and where.startswith(missing):
            local = Path(*where.split(".")).with_suffix(".py")
            if local.is_file():
                # The console script does not put the working directory on sys.path, as python -m
                # does: a module of the working directory is loaded as its file.
                return _load_file(spec, str(local))
            raise ConfigError(
                f"collate {spec}: no module named {missing!r} (a file is path/to/file.py:NAME)"
            ) from None
        raise ConfigError(f"collate {spec}: importing {where} raised {_raised(error)}") from None


def _raised(error: BaseException, file: Path | None = None) -> str:
    """``Type: message (file:line)``, the line being the last one of ``file`` (else the last
    frame) that the error passed through."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if file is not None and Path(f.filename) == file] or frames
    where = f" ({Path(mine[-1].filename).name}:{mine[-1].lineno})" if mine else ""
    return f"{type(error).__name__}: {one_line(error)}{where}"


def handed_columns(model: Any, names: list[str], handed: Handed) -> list[str]:
    """The columns of ``names`` a collate function is handed for ``model`` (see the module
    notes), in the data's order."""
    parameters = forward_parameters(model)
    if handed == "all" or parameters is None:
        return list(names)
    return [n for n in names if n in parameters or n in TRAINER_LABELS]


def call_collate(
    feed: CollateFeed, rows: list[dict[str, Any]], row_ids: list[int], model: Any
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """What ``feed`` returns for ``rows`` (rows ``row_ids`` of the data), checked to be model
    keyword arguments, and warnings about keys ``model.forward`` does not name.

    A :class:`~maskprep.errors.MaskprepError` the function raises (maskprep's own collator
    refusing rows) keeps its class and exit code, prefixed with the function's name; anything
    else it raises, or returns, that cannot be fed is a :class:`~maskprep.errors.ConfigError`.
    """
    import torch

    shown = _shown_rows(row_ids)
    try:
        out = feed.function(rows)
    except MaskprepError as error:
        kind = ConfigError if isinstance(error, ConfigError) else DataError
        raise kind(f"{feed.name} on rows {shown}: {error}") from None
    except Exception as error:  # the function is the caller's: anything may come out of it
        raise ConfigError(f"{feed.name} raised on rows {shown}: {_raised(error)}") from None
    if not isinstance(out, Mapping):
        raise ConfigError(
            f"{feed.name} returned a {type(out).__name__} for rows {shown}, not a dict of model "
            "keyword arguments"
        )
    out = dict(out)
    ids = out.get("input_ids")
    if not isinstance(ids, torch.Tensor):
        what = "no input_ids" if ids is None else f"input_ids as a {type(ids).__name__}"
        raise ConfigError(f"{feed.name} returned {what} for rows {shown}; a tensor is needed")
    if ids.dim() != 2 or ids.shape[0] != len(rows) or ids.is_floating_point():
        raise ConfigError(
            f"{feed.name} returned input_ids of shape {tuple(ids.shape)} and dtype "
            f"{str(ids.dtype).removeprefix('torch.')} for {len(rows)} rows; (rows, length) "
            "integer ids are needed"
        )
    for key, value in out.items():
        if isinstance(value, torch.Tensor):
            if value.dim() >= 1 and value.shape[0] != len(rows):
                raise ConfigError(
                    f"{feed.name} returned {key} of shape {tuple(value.shape)} for {len(rows)} "
                    "rows: its first dimension must be the batch"
                )
        elif not isinstance(value, _SCALARS):
            raise ConfigError(
                f"{feed.name} returned {key} as a {type(value).__name__}, not a tensor: the "
                "model would be called with it as it is"
            )
    labels = out.get("labels")
    if isinstance(labels, torch.Tensor) and labels.shape != ids.shape:
        raise ConfigError(
            f"{feed.name} returned labels of shape {tuple(labels.shape)} for input_ids of shape "
            f"{tuple(ids.shape)}: one label per token is needed (the model shifts them)"
        )
    return out, _unnamed_keys(feed.name, out, model)


def _unnamed_keys(name: str, out: dict[str, Any], model: Any) -> tuple[str, ...]:
    """Warnings for keys ``model.forward`` does not name; an error where it takes no others."""
    parameters = forward_parameters(model)
    if parameters is None:
        return ()
    unnamed = [key for key in out if key not in parameters]
    if not unnamed:
        return ()
    shown = ", ".join(repr(k) for k in unnamed)
    cls = type(model).__name__
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        raise ConfigError(
            f"{name} returned {shown}, which {cls}.forward does not take: calling the model "
            "with it raises TypeError"
        )
    return (
        f"{name} returns {shown}, which {cls}.forward does not name: it reaches the model's "
        "**kwargs, passed on to its layers (ignored there, or an error)",
    )


def _shown_rows(row_ids: list[int]) -> str:
    head = ", ".join(str(r) for r in row_ids[:4])
    return head + (f", … ({len(row_ids)} rows)" if len(row_ids) > 4 else "")


def describe_feed(kwargs: dict[str, Any]) -> str:
    """What a batch gave the model, in words: its attention mask and position arguments."""
    mask = kwargs.get("attention_mask")
    parts = []
    if mask is None:
        parts.append("no attention_mask")
    elif getattr(mask, "dim", lambda: 0)() == 2:
        parts.append("a 2D attention_mask")
    else:
        parts.append(f"a {mask.dim()}D attention_mask")
    parts.append("position_ids" if "position_ids" in kwargs else "no position_ids")
    if "use_cache" in kwargs:
        parts.append(f"use_cache={kwargs['use_cache']}")
    return ", ".join(parts)


def name_row(message: str, batch_ids: list[int]) -> str:
    """A collator's message about row ``i`` of a batch, naming the row in the data instead."""
    found = re.match(r"row (\d+)\b", message)
    if found is None or int(found.group(1)) >= len(batch_ids):
        return message
    return f"row {batch_ids[int(found.group(1))]}{message[found.end() :]}"


def fed_batches(
    chunks: Chunks,
    size: int,
    feed: CollateFeed,
    kept: list[str],
    collator: Collator,
    packed: bool,
    model: Any,
    facts: ModelFacts,
) -> Iterator[FedBatch]:
    """The rows in batches of ``size``, each handed to ``feed`` as a trainer hands them (the
    columns ``kept``), what it returns checked (:func:`call_collate`) and its rows laid out
    against the output's (a row it holds nowhere, or positions past the model's table, refused
    in one line)."""
    for table, ids in chunks(size):
        try:
            truth = row_arrays(
                with_labels(table),
                pad_id=collator.pad_id,
                padding_side=collator.padding_side,
                packed=packed,
            )
        except DataError as error:
            raise DataError(name_row(str(error), ids)) from None
        kwargs, warnings = call_collate(feed, table.select(kept).to_pylist(), ids, model)
        fed_ids, fed_labels = fed_arrays(kwargs)
        arrays = lay_out(truth, fed_ids, fed_labels)
        if isinstance(arrays, Misplaced):
            raise ConfigError(
                f"{feed.name} returned row {arrays.index} of the batch of rows "
                f"{', '.join(map(str, ids[:4]))}{', …' if len(ids) > 4 else ''} without the "
                f"{arrays.length} tokens of row {ids[arrays.index]} in its {arrays.width} ids: "
                "verify judges each fed row against the row handed to it, so a function that "
                "reorders, cuts or rewrites rows cannot be judged"
            )
        check_positions(feed.name, kwargs, arrays, ids, facts)
        yield FedBatch(kwargs, arrays, fed_labels, ids, warnings)


def check_positions(
    name: str, kwargs: dict[str, Any], truth: RowArrays, ids: list[int], facts: ModelFacts
) -> None:
    """Refuse a feed that needs a position the model's absolute table does not have: the forward
    pass would fail, on a GPU with a device-side assert far from the row."""
    if facts.max_positions is None:
        return
    real = truth.attention_mask > 0
    positions = kwargs.get("position_ids")
    if positions is not None and hasattr(positions, "numpy"):
        fed = np.broadcast_to(positions.detach().cpu().numpy(), real.shape)
        used = np.where(real, fed, -1).max(axis=1)
    else:
        # The model numbers the positions itself, padding included, up to the row's width.
        used = np.full(len(real), real.shape[1] - 1 + facts.position_offset)
    beyond = used >= facts.max_positions
    if beyond.any():
        row = int(np.argmax(beyond))
        raise DataError(
            f"row {ids[row]}: {name} feeds it position {int(used[row])}, but {facts.name} has "
            f"{facts.max_positions} position embeddings: the forward pass would fail"
        )
