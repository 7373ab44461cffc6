"""How ``verify`` loads the model, samples rows and feeds them: :class:`VerifyOptions`, and the
names it accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import PACK_FORMS, PADDING_SIDES
from ..errors import ConfigError
from ..storage.options import StorageOptions
from ..token_ids import check_token_id

ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: ``VerifyOptions.rows`` that probes every row.
ROWS_ALL = "all"
#: Which columns a caller's collate function is handed (see :mod:`maskprep.verifying.feed`).
COLLATE_COLUMNS = ("forward", "all")
#: The largest seed: torch seeds its generators with an unsigned 64-bit integer.
MAX_SEED = (1 << 64) - 1
PROBES = (
    "pad_invariance",
    "unpadded_reference",
    "labels_loss",
    "labels_gradient",
    "cross_document",
    "causal",
)


@dataclass(frozen=True)
class VerifyOptions:
    """How ``verify`` loads the model, which rows it samples and how it feeds them.

    ``from_config`` builds the model from its configuration with random weights (seeded by
    ``seed``), ``num_layers`` cutting it to that many layers. ``attn_implementations`` are tried in
    turn, unavailable ones reported as skipped; ``None`` tries all three on a CUDA device and, on
    a CPU, only the one the model is set to (what training on it runs). ``pack_forms`` are the
    collator forms checked on packed rows (``mask2d`` is the leaky diagnostic); ``None`` checks
    the forms that keep documents apart for the model's kind: ``position_ids`` and ``mask4d`` for
    decoders, ``mask4d`` for encoders (which build no mask from ``position_ids``).
    ``pad_position_ids`` feeds padded rows ``position_ids`` counted over real tokens; ``None``
    does as :func:`maskprep.collate.for_model` does, which feeds them to absolute-position models.

    ``rows`` rows are drawn at random (``seed``) and the ``longest`` rows of the data are added,
    so that the rows reaching farthest into the model's positions are checked too; ``"all"``
    probes every row, read in batches as they are probed (each row costs what a sampled one
    does). ``collate_columns`` is which columns a caller's collate function is handed
    (``verify(..., collate=...)``): ``forward``, those ``model.forward`` names (and the label
    columns), as ``transformers.Trainer`` hands them at its defaults, or ``all``. ``pad_id``,
    ``padding_side`` and ``packed`` describe the rows; ``None`` takes them from the output's
    manifest or, for data without one, from what the rows show (their padding, ``seq_lens`` or
    ``position_ids``). ``progress`` lets transformers show its progress bars while loading.
    """

    revision: str | None = None
    trust_remote_code: bool = False
    from_config: bool = False
    num_layers: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    attn_implementations: tuple[str, ...] | None = None
    pack_forms: tuple[str, ...] | None = None
    pad_position_ids: bool | None = None
    rows: int | Literal["all"] = 8
    longest: int = 2
    seed: int = 0
    batch_size: int = 4
    pad_id: int | None = None
    padding_side: str | None = None
    packed: bool | None = None
    progress: bool = False
    collate_columns: str = "forward"
    #: Configures the filesystem of a URL input (``s3://...``).
    storage_options: StorageOptions = field(default_factory=StorageOptions)

    def __post_init__(self) -> None:
        _one_of("device", self.device, DEVICES)
        _one_of("dtype", self.dtype, DTYPES)
        if self.attn_implementations is not None:
            unknown = [a for a in self.attn_implementations if a not in ATTN_IMPLEMENTATIONS]
            if unknown or not self.attn_implementations:
                raise ConfigError(
                    f"attention implementations must be among {', '.join(ATTN_IMPLEMENTATIONS)}, "
                    f"not {', '.join(unknown) or 'none'}"
                )
        forms = self.pack_forms if self.pack_forms is not None else ("mask4d",)
        bad_forms = [f for f in forms if f not in PACK_FORMS]
        if bad_forms or not forms:
            raise ConfigError(
                f"pack forms must be among {', '.join(PACK_FORMS)}, not "
                f"{', '.join(bad_forms) or 'none'}"
            )
        if self.rows != ROWS_ALL and (
            not isinstance(self.rows, int) or isinstance(self.rows, bool) or self.rows < 1
        ):
            raise ConfigError(f"rows must be at least 1, or {ROWS_ALL!r}, not {self.rows!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {self.batch_size}")
        _one_of("collate_columns", self.collate_columns, COLLATE_COLUMNS)
        if self.longest < 0:
            raise ConfigError(f"longest must be 0 or more, not {self.longest}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be 0 to {MAX_SEED}, not {self.seed}")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, not {self.num_layers}")
        if self.num_layers is not None and not self.from_config:
            raise ConfigError("num_layers only applies to a model built from its config")
        check_token_id("pad_id", self.pad_id)
        if self.padding_side not in (None, *PADDING_SIDES):
            raise ConfigError(f"padding_side must be left or right, not {self.padding_side!r}")


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
