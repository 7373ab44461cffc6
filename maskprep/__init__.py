"""maskprep: raw text → padded, packed, correctly masked training tensors, and proof nothing leaks.

The library mirrors the command line: :func:`build` does what ``maskprep build`` does and returns a
:class:`BuildResult`; :func:`inspect` does what ``maskprep inspect`` does and returns an
:class:`InspectResult`.
"""

from ._version import __version__
from .checks.driver import inspect
from .checks.options import InspectOptions
from .checks.results import InspectResult
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
from .errors import BadRecordError, ConfigError, DataError, MaskprepError, OutputError
from .output.dataset import load_dataset
from .output.manifest import read_manifest
from .pipeline import BuildResult, Progress, Totals, build
from .probes.driver import verify
from .probes.options import VerifyOptions
from .probes.results import Check, VerifyResult
from .tokenizing.pool import Parallelism

__all__ = [
    "IGNORE_INDEX",
    "BadRecordError",
    "BuildConfig",
    "BuildResult",
    "Check",
    "ConfigError",
    "DataError",
    "InspectOptions",
    "InspectResult",
    "MaskprepError",
    "MergeResult",
    "OutputConfig",
    "OutputError",
    "Parallelism",
    "PartSpec",
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
