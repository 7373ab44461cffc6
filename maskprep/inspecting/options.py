"""What ``maskprep inspect`` is asked to do: :class:`InspectOptions`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import MAX_BATCH_POSITIONS, STRATEGIES
from ..errors import ConfigError
from ..storage.options import StorageOptions
from ..token_ids import MAX_TOKEN_ID, check_token_id


@dataclass(frozen=True)
class InspectOptions:
    """What to inspect and how.

    ``sample`` inspects that many rows drawn at random (``seed``) instead of all. ``strategy``,
    ``buckets``, ``pad_id``, ``eos_id`` and ``vocab_size`` override what the manifest records (or
    stand in for it on shards without one). ``tokenizer`` (Hub name or directory) decodes rows and
    supplies the EOS id and the vocabulary size when nothing else does. ``show_rows`` decodes the
    first rows inspected, ``row_indices`` those rows of the whole data. ``listed`` is how many
    offending row indices a check reports.
    ``batch_rows`` bounds the rows analysed at once (and so the memory used). ``check_hashes``
    compares each shard's sha256 with the manifest's when every row is inspected (the files are
    read once more, on a thread beside the analysis). ``model`` (Hub name or directory; only its
    config is read, at ``model_revision``; a model with its own code only with
    ``trust_remote_code``) holds the rows to its position table (or context length) and
    vocabulary.
    ``storage_options`` configures the filesystem of a URL input (``s3://...``).
    """

    sample: int | None = None
    seed: int = 0
    strategy: str | None = None
    buckets: tuple[int, ...] | None = None
    pad_id: int | None = None
    eos_id: int | None = None
    vocab_size: int | None = None
    tokenizer: str | None = None
    max_pad_fraction: float | None = None
    min_label_fraction: float | None = None
    show_rows: int = 0
    row_indices: tuple[int, ...] = ()
    listed: int = 5
    batch_rows: int = 32768
    check_hashes: bool = True
    model: str | None = None
    model_revision: str | None = None
    trust_remote_code: bool = False
    storage_options: StorageOptions = field(default_factory=StorageOptions)

    def __post_init__(self) -> None:
        if self.sample is not None and self.sample < 1:
            raise ConfigError(f"sample must be at least 1 row, not {self.sample}")
        if self.seed < 0:
            raise ConfigError(f"seed must not be negative, not {self.seed}")
        check_token_id("pad_id", self.pad_id)
        check_token_id("eos_id", self.eos_id)
        if self.vocab_size is not None and not 1 <= self.vocab_size <= MAX_TOKEN_ID + 1:
            raise ConfigError(f"vocab_size {self.vocab_size} is not 1 to {MAX_TOKEN_ID + 1}")
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}"
            )
        if self.buckets is not None and (
            not self.buckets
            or not 1 <= min(self.buckets) <= max(self.buckets) <= MAX_BATCH_POSITIONS
        ):
            raise ConfigError(
                f"bucket widths must be 1 to {MAX_BATCH_POSITIONS:,}, not {self.buckets}"
            )
        for name in ("max_pad_fraction", "min_label_fraction"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must lie between 0 and 1, not {value}")
        if self.show_rows < 0 or any(i < 0 for i in self.row_indices):
            raise ConfigError("row numbers must not be negative")
        if self.model is None and (self.model_revision is not None or self.trust_remote_code):
            raise ConfigError(
                "a model revision or trusting its code needs a model to check against"
            )
        if self.listed < 0 or self.batch_rows < 1:
            raise ConfigError("listed must be >= 0 and batch_rows >= 1")
