"""maskprep: raw text → padded, packed, correctly masked training tensors, and proof nothing leaks.

The library mirrors the command line: :func:`build` does what ``maskprep build`` does and returns a
:class:`BuildResult`; :func:`inspect` does what ``maskprep inspect`` does and returns an
:class:`InspectResult`.

The names below are imported on first use (PEP 562), so that ``import maskprep`` loads neither
pyarrow nor transformers nor torch; ``from maskprep import build`` works as usual.

The stages live in subpackages whose tree is the data flow: :mod:`maskprep.sources` →
:mod:`maskprep.tokenizing` → :mod:`maskprep.shaping` → :mod:`maskprep.output`, run in turn by
:mod:`maskprep.pipeline`; :mod:`maskprep.distributed` (merge, Ray), :mod:`maskprep.reading` (an
output read back), :mod:`maskprep.inspecting` (inspect), :mod:`maskprep.verifying` (verify) and
:mod:`maskprep.cli` on top. Beside them: :mod:`maskprep.storage` (local paths and object-store
URLs, under every stage), :mod:`maskprep.collate` (an output's rows → a model's keyword
arguments) and :mod:`maskprep.training` (``LeakGuard``, the feed checked as it trains).

One word for each thing: a *shard* is one file of an output, a *part* one piece of an array
build (``--num-parts``), a *check* what ``inspect`` runs, a *probe* what ``verify`` runs.
"""

from __future__ import annotations

# Nothing is imported here before it is asked for, typing included: the ``maskprep`` program
# handles SIGINT from its first line (maskprep.launch), and importing this package comes first.
TYPE_CHECKING = False

#: Each public name and the module that defines it.
_EXPORTS = {
    "__version__": "_version",
    "IGNORE_INDEX": "columns",
    "BadRecordError": "errors",
    "BuildConfig": "config",
    "BuildResult": "pipeline",
    "ConfigError": "errors",
    "DataError": "errors",
    "InspectOptions": "inspecting.options",
    "IOFailure": "errors",
    "InspectResult": "inspecting.results",
    "Manifest": "output.manifest",
    "MaskprepError": "errors",
    "MergeResult": "distributed.merge",
    "OutputConfig": "config",
    "OutputError": "errors",
    "PartSpec": "config",
    "ProbeResult": "verifying.results",
    "Progress": "pipeline",
    "SFTConfig": "config",
    "ShapeConfig": "config",
    "SourceConfig": "config",
    "TokenizerConfig": "config",
    "Totals": "output.manifest",
    "VerifyOptions": "verifying.options",
    "VerifyResult": "verifying.results",
    "build": "pipeline",
    "inspect": "inspecting.driver",
    "load_dataset": "output.finished",
    "merge": "distributed.merge",
    "read_manifest": "output.manifest",
    "verify": "verifying.driver",
}

__all__ = [
    "IGNORE_INDEX",
    "BadRecordError",
    "BuildConfig",
    "BuildResult",
    "ConfigError",
    "DataError",
    "IOFailure",
    "InspectOptions",
    "InspectResult",
    "Manifest",
    "MaskprepError",
    "MergeResult",
    "OutputConfig",
    "OutputError",
    "PartSpec",
    "ProbeResult",
    "Progress",
    "SFTConfig",
    "ShapeConfig",
    "SourceConfig",
    "TokenizerConfig",
    "Totals",
    "VerifyOptions",
    "VerifyResult",
    "__version__",
    "build",
    "inspect",
    "load_dataset",
    "merge",
    "read_manifest",
    "verify",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    import importlib

    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups find it directly
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from typing import Any

    from ._version import __version__
    from .columns import IGNORE_INDEX
    from .config import (
        BuildConfig,
        OutputConfig,
        PartSpec,
        SFTConfig,
        ShapeConfig,
        SourceConfig,
        TokenizerConfig,
    )
    from .distributed.merge import MergeResult, merge
    from .errors import (
        BadRecordError,
        ConfigError,
        DataError,
        IOFailure,
        MaskprepError,
        OutputError,
    )
    from .inspecting.driver import inspect
    from .inspecting.options import InspectOptions
    from .inspecting.results import InspectResult
    from .output.finished import load_dataset
    from .output.manifest import Manifest, Totals, read_manifest
    from .pipeline import BuildResult, Progress, build
    from .verifying.driver import verify
    from .verifying.options import VerifyOptions
    from .verifying.results import ProbeResult, VerifyResult
