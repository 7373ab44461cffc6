"""A collate function under test (``verify --collate SPEC``): loading it from its SPEC, handing it
rows as a trainer hands them, and checking that what it returns is something a model can be fed.

A SPEC is ``path/to/file.py:NAME`` or ``package.module:NAME``; ``NAME`` (dotted for an attribute
of an attribute) is a collate function, what ``DataLoader(collate_fn=)`` and
``Trainer(data_collator=)`` take: a list of row dicts → a dict of model keyword arguments. A file
is loaded as ``python file.py`` would load it (its folder first on ``sys.path`` while it runs), so
it need not be importable; a module is imported (one of the working directory that
is not on ``sys.path`` is loaded as its file). Every failure to load or call it is
one line naming the SPEC (:class:`~maskprep.errors.ConfigError`, exit 2).

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
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, DataError, MaskprepError, one_line
from .options import COLLATE_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

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

    def __post_init__(self) -> None:
        if self.handed not in COLLATE_COLUMNS:
            raise ConfigError(
                f"collate columns must be one of {', '.join(COLLATE_COLUMNS)}, not {self.handed!r}"
            )


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
    module = _load_file(spec, where) if _is_file_spec(where) else _import(spec, where)
    value: Any = module
    for part in name.split("."):
        if not hasattr(value, part):
            raise ConfigError(f"collate {spec}: {where} has no {name!r}")
        value = getattr(value, part)
    _check_callable(value, spec)
    return value


def _is_file_spec(where: str) -> bool:
    return where.endswith(".py") or os.sep in where or "/" in where or os.path.isfile(where)


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
    except ModuleNotFoundError as error:
        local = Path(*where.split(".")).with_suffix(".py")
        if error.name is not None and where.startswith(error.name) and local.is_file():
            # The console script does not put the working directory on sys.path, as python -m
            # does: a module of the working directory is loaded as its file.
            return _load_file(spec, str(local))
        if error.name is not None and where.startswith(error.name):
            raise ConfigError(
                f"collate {spec}: no module named {error.name!r} (a file is path/to/file.py:NAME)"
            ) from None
        raise ConfigError(f"collate {spec}: importing {where} raised {_raised(error)}") from None
    except (Exception, SystemExit) as error:
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
    if handed == "all":
        return list(names)
    try:
        kept = set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return list(names)
    kept |= set(TRAINER_LABELS)
    return [n for n in names if n in kept]


def handed_rows(table: pa.Table, kept: list[str]) -> list[dict[str, Any]]:
    """The rows of ``table`` as a trainer hands them: one dict of Python values per row."""
    return table.select(kept).to_pylist()


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
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
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
