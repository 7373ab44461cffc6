"""Frozen, validated configuration objects; serialised as-is into the manifest."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from decimal import Context, Decimal, DecimalException
from typing import Any, Literal, get_args

from .errors import ConfigError
from .storage.location import local_form

InputFormat = Literal["auto", "text", "jsonl"]
BadRecordPolicy = Literal["fail", "skip"]
Strategy = Literal["pad", "bucket", "pack", "none"]
PackAlgorithm = Literal["greedy", "bfd"]
Overflow = Literal["truncate", "drop", "split", "error"]
PaddingSide = Literal["left", "right"]
ShardFormat = Literal["parquet", "arrow"]
#: How a collator feeds packed rows (see :mod:`maskprep.collate`); ``mask2d`` lets the documents
#: of a pack attend to each other: a diagnostic, only ever emitted when asked for by that name.
PackForm = Literal["position_ids", "mask4d", "mask2d"]

TrainOn = Literal["assistant", "last-assistant", "all"]

# The choices each option accepts, in the order help texts list them: from their types.
INPUT_FORMATS: tuple[str, ...] = get_args(InputFormat)
BAD_RECORD_POLICIES: tuple[str, ...] = get_args(BadRecordPolicy)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
PACK_ALGORITHMS: tuple[str, ...] = get_args(PackAlgorithm)
OVERFLOWS: tuple[str, ...] = get_args(Overflow)
PADDING_SIDES: tuple[str, ...] = get_args(PaddingSide)
SHARD_FORMATS: tuple[str, ...] = get_args(ShardFormat)
PACK_FORMS: tuple[str, ...] = get_args(PackForm)
TRAIN_ON: tuple[str, ...] = get_args(TrainOn)
#: Documents best-fit decreasing regroups at a time, unless told otherwise.
DEFAULT_PACK_WINDOW = 1000
#: Default cap on one input line (one record), in bytes. The longest real documents (a book, a
#: large source file) are a few MB, and 64 MiB of text is some 16 M tokens, far past any row. What
#: the cap bounds is the memory one line takes while it is read, decoded and parsed (its bytes,
#: its text, the parsed value: a few hundred MB at worst), where an endless line (``/dev/zero``)
#: would otherwise take all of it.
DEFAULT_MAX_RECORD_BYTES = 64 << 20
#: Positions one Arrow list column can hold in one record batch: its offsets are int32.
MAX_BATCH_POSITIONS = (1 << 31) - 1
#: The largest byte size a size option takes (1 EiB): far past any disk or line, and small enough
#: that every size fits the 64-bit integers files and buffers are measured in.
MAX_SIZE = 1 << 60
#: The most parts one build may be split into: each is a task and an output folder of its own
#: (Kubernetes indexed jobs stop at 100,000 completions, Slurm arrays at a few million).
MAX_PARTS = 1_000_000


#: The metadata of a field the manifest leaves out: where the output goes and how it is opened,
#: guards against hostile or broken input (they change no build that stays within them), and
#: what the manifest records in an entry of its own.
NOT_RECORDED = {"manifest": False}


def _recorded(config: Any) -> dict[str, Any]:
    """A config dataclass as the manifest records it: as :func:`dataclasses.asdict` makes it,
    less the fields marked :data:`NOT_RECORDED`, in nested configs too."""
    return {
        spec.name: _recorded(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
        for spec in dataclasses.fields(config)
        if spec.metadata.get("manifest", True)
        for value in (getattr(config, spec.name),)
    }


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class RejectLimit:
    """How many bad records a build under the ``skip`` policy may reject before it fails: at most
    ``count`` records, or at most ``percent`` per cent of the records read (one of the two)."""

    count: int | None = None
    percent: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ConfigError("max_rejects is a number of records or a percentage, one of them")
        if self.count is not None and self.count < 0:
            raise ConfigError(f"max_rejects must not be negative, not {self.count}")
        if self.percent is not None and not 0.0 <= self.percent <= 100.0:
            raise ConfigError(f"max_rejects must lie between 0% and 100%, not {self.percent}%")

    def exceeded(self, rejected: int, read: int) -> bool:
        """Whether ``rejected`` of ``read`` records is past the limit."""
        if self.count is not None:
            return rejected > self.count
        assert self.percent is not None
        return rejected * 100 > self.percent * read

    def __str__(self) -> str:
        return f"{self.count:,}" if self.count is not None else f"{self.percent:g}%"


def parse_reject_limit(text: str) -> RejectLimit:
    """Parse ``N`` (records) or ``P%`` (per cent of the records read), e.g. ``100`` or ``0.5%``."""
    cleaned = text.strip()
    try:
        if cleaned.endswith("%"):
            percent = float(cleaned[:-1])
            if percent != percent:  # NaN
                raise ValueError(cleaned)
            return RejectLimit(percent=percent)
        return RejectLimit(count=int(cleaned))
    except ValueError:
        raise ConfigError(
            f"cannot read {text!r} as a reject limit; use a number of records (100) or a "
            "percentage of the records read (0.5%)"
        ) from None


def parse_share(text: str, what: str = "share of tokens") -> float:
    """Parse a share given as a percentage (``5%``, ``0.5%``) or a fraction (``0.05``) into a
    fraction from 0 to 1. A bare number above 1 is refused rather than guessed at: ``5`` could
    mean 5 % or nothing sensible."""
    cleaned = text.strip()
    percent = cleaned.endswith("%")
    try:
        value = float(cleaned[:-1] if percent else cleaned)
    except ValueError:
        value = float("nan")
    share = value / 100 if percent else value
    if not 0.0 <= share <= 1.0:  # NaN and infinities too
        range_ = "from 0% to 100%" if percent else "from 0 to 1"
        hint = f" (did you mean {cleaned}%?)" if not percent and 1 < value <= 100 else ""
        raise ConfigError(
            f"cannot read {text!r} as a {what}: give a percentage (5%) or a fraction (0.05) "
            f"{range_}{hint}"
        )
    return share


@dataclass(frozen=True)
class SourceConfig:
    """Where records come from and how to read them.

    ``inputs`` are paths, directories, globs or ``-`` for standard input. ``text_field`` is a dotted
    path into each JSON object (``meta.body``). ``max_record_bytes`` caps one line: a longer one is
    a bad record. ``max_rejects`` (with ``on_bad_record="skip"``) fails the build when more records
    than that are rejected. Neither changes a build that stays within them, so the manifest does
    not record them.
    """

    inputs: tuple[str, ...]
    input_format: InputFormat = "auto"
    text_field: str = "text"
    on_bad_record: BadRecordPolicy = "fail"
    max_record_bytes: int = field(default=DEFAULT_MAX_RECORD_BYTES, metadata=NOT_RECORDED)
    max_rejects: RejectLimit | None = field(default=None, metadata=NOT_RECORDED)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("no input given")
        # A file:// URL is its local path: the manifest records the same bytes either way.
        object.__setattr__(self, "inputs", tuple(local_form(i) for i in self.inputs))
        _check_choice("input_format", self.input_format, INPUT_FORMATS)
        _check_choice("on_bad_record", self.on_bad_record, BAD_RECORD_POLICIES)
        _check_field_path("text_field", self.text_field)
        _check_size("max_record_bytes", self.max_record_bytes)
        if self.max_rejects is not None and self.on_bad_record != "skip":
            raise ConfigError(
                "max_rejects limits the records skipped; it applies with on_bad_record 'skip' "
                "(under 'fail' the first bad record stops the build)"
            )


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer to load and how to frame each document with special tokens.

    ``pad_token`` is ``None`` (use the tokenizer's), ``"eos"`` (reuse EOS, the Llama habit) or a
    token already in the vocabulary. ``padding_side`` ``None`` means the tokenizer's own.
    ``add_eos`` ``None`` means: append EOS after prompt/completion records' completions, not
    after chat records (whose template ends every turn itself), nor after plain documents,
    except those packed (see :attr:`BuildConfig.resolved_tokenizer`: packed documents must end
    where the next one starts).
    """

    name_or_path: str
    revision: str | None = None
    trust_remote_code: bool = False
    pad_token: str | None = None
    add_special_tokens: bool = True
    add_eos: bool | None = None
    padding_side: PaddingSide | None = None

    def __post_init__(self) -> None:
        if not self.name_or_path:
            raise ConfigError("no tokenizer given")
        if self.padding_side is not None:
            _check_choice("padding_side", self.padding_side, PADDING_SIDES)


@dataclass(frozen=True)
class ShapeConfig:
    """How encoded documents become rows.

    ``stride`` is the number of tokens consecutive windows share when ``overflow="split"``.
    ``buckets`` (strategy ``bucket``) are the row lengths a document may be padded to; they are
    resolved here to a sorted tuple ending at ``max_length`` (default: powers of two from 64 below
    ``max_length``, then ``max_length``). ``pack_algorithm`` and ``pack_window`` (strategy ``pack``)
    choose how documents are grouped into rows; ``pack_window`` is the least number of documents
    best-fit decreasing sees at once. ``pack_algorithm`` unset is best-fit decreasing (see
    :attr:`resolved_pack_algorithm`). ``max_truncated`` (a fraction, 0 to 1) fails the build when
    more than that share of the tokens read is lost to ``overflow`` (cut by truncation or dropped
    with their documents); a guard that changes no build within it, so the manifest does not
    record it.
    """

    max_length: int
    strategy: Strategy = "pad"
    overflow: Overflow = "truncate"
    stride: int = 0
    buckets: tuple[int, ...] | None = None
    pack_algorithm: PackAlgorithm | None = None
    pack_window: int = DEFAULT_PACK_WINDOW
    max_truncated: float | None = field(default=None, metadata=NOT_RECORDED)

    def __post_init__(self) -> None:
        _check_choice("strategy", self.strategy, STRATEGIES)
        limit = self.max_truncated
        if limit is not None and (isinstance(limit, bool) or not 0.0 <= limit <= 1.0):
            # Also refuses NaN, which compares false with everything.
            raise ConfigError(f"max_truncated must be a fraction from 0 to 1, not {limit!r}")
        _check_choice("overflow", self.overflow, OVERFLOWS)
        if self.max_length < 1:
            raise ConfigError(f"max_length must be at least 1, not {self.max_length}")
        if self.max_length > MAX_BATCH_POSITIONS:
            raise ConfigError(
                f"max_length {self.max_length} is past the longest row a shard can hold "
                f"({MAX_BATCH_POSITIONS:,} positions: Arrow list offsets are int32)"
            )
        if self.stride < 0:
            raise ConfigError(f"stride must not be negative, not {self.stride}")
        if self.stride and self.overflow != "split":
            raise ConfigError("stride only applies when overflow is 'split'")
        if self.pack_algorithm is not None:
            _check_choice("pack_algorithm", self.pack_algorithm, PACK_ALGORITHMS)
        if self.pack_window < 1:
            raise ConfigError(f"pack_window must be at least 1, not {self.pack_window}")
        packing_changed = (
            self.pack_algorithm not in (None, "greedy") or self.pack_window != DEFAULT_PACK_WINDOW
        )
        if self.strategy != "pack" and packing_changed:
            raise ConfigError(
                "pack_algorithm and pack_window only apply to strategy 'pack', "
                f"not {self.strategy!r}"
            )
        if self.strategy == "bucket":
            # Frozen: store the resolved buckets so the manifest records what was used.
            object.__setattr__(self, "buckets", resolve_buckets(self.buckets, self.max_length))
        elif self.buckets is not None:
            raise ConfigError(f"buckets only apply to strategy 'bucket', not {self.strategy!r}")

    @property
    def resolved_pack_algorithm(self) -> PackAlgorithm:
        """The packing algorithm a build uses: ``pack_algorithm``, or, unset, best-fit
        decreasing for strategy ``pack`` (it fills rows far better at about the same cost: see
        bench/README.md) and ``greedy`` for the others (no packing; what their manifests have
        always recorded)."""
        if self.pack_algorithm is not None:
            return self.pack_algorithm
        return "bfd" if self.strategy == "pack" else "greedy"


def resolve_buckets(buckets: tuple[int, ...] | None, max_length: int) -> tuple[int, ...]:
    """Sorted, distinct bucket lengths whose largest is ``max_length``.

    ``None`` gives the default: powers of two from 64 that are below ``max_length``, then
    ``max_length`` itself. A bucket above ``max_length`` or below 1 is a :class:`ConfigError`.
    """
    if buckets is None:
        defaults = [1 << k for k in range(6, max_length.bit_length()) if (1 << k) < max_length]
        return (*defaults, max_length)
    if not buckets:
        raise ConfigError("buckets must name at least one length")
    for size in buckets:
        if size < 1 or size > max_length:
            raise ConfigError(f"bucket {size} must be between 1 and max_length {max_length}")
    return tuple(sorted(set(buckets) | {max_length}))


def parse_buckets(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of bucket lengths such as ``64,128,256``."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
        if not sizes:
            raise ValueError(text)
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as bucket lengths; use e.g. 64,128,256") from None
    return sizes


@dataclass(frozen=True)
class OutputConfig:
    """Where and how shards are written. A shard rolls over at ``shard_rows`` rows or
    ``shard_size`` bytes (uncompressed Arrow size), whichever comes first."""

    #: Left out of the manifest, so that a build moved elsewhere still compares equal.
    directory: str = field(metadata=NOT_RECORDED)
    format: ShardFormat = "parquet"
    shard_rows: int | None = None
    shard_size: int | None = None
    overwrite: bool = field(default=False, metadata=NOT_RECORDED)
    compression: str = "zstd"
    #: Finish an interrupted build in ``directory``, reusing its complete shards.
    resume: bool = field(default=False, metadata=NOT_RECORDED)

    def __post_init__(self) -> None:
        _check_choice("format", self.format, SHARD_FORMATS)
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite exclude each other: resume keeps shards")
        if self.shard_rows is not None and self.shard_rows < 1:
            raise ConfigError(f"shard_rows must be at least 1, not {self.shard_rows}")
        if self.shard_size is not None:
            _check_size("shard_size", self.shard_size)


def _check_field_path(name: str, value: str | None) -> None:
    if value is not None and (not value or any(not part for part in value.split("."))):
        raise ConfigError(f"{name} {value!r} is not a valid dotted path")


@dataclass(frozen=True)
class SFTConfig:
    """Supervised fine-tuning records: what they hold and which of their tokens are trained.

    Either ``prompt_field`` and ``completion_field`` (the prompt is not trained unless
    ``train_on_prompt``) or ``messages_field`` (a list of ``{"role", "content"}`` objects rendered
    with the tokenizer's chat template, or the Jinja file ``chat_template``; ``train_on`` picks
    every assistant turn, only the last one, or everything). Field names are dotted paths.
    """

    prompt_field: str | None = None
    completion_field: str | None = None
    messages_field: str | None = None
    train_on_prompt: bool = False
    train_on: TrainOn = "assistant"
    chat_template: str | None = None

    def __post_init__(self) -> None:
        for name in ("prompt_field", "completion_field", "messages_field"):
            _check_field_path(name, getattr(self, name))
        _check_choice("train_on", self.train_on, TRAIN_ON)
        pair = (self.prompt_field is not None, self.completion_field is not None)
        if pair[0] != pair[1]:
            raise ConfigError("prompt_field and completion_field must be given together")
        if pair[0] and self.messages_field is not None:
            raise ConfigError("give prompt_field/completion_field or messages_field, not both")
        if not pair[0] and self.messages_field is None:
            raise ConfigError("SFT records need prompt_field/completion_field or messages_field")
        if self.is_chat and self.train_on_prompt:
            raise ConfigError("train_on_prompt applies to prompt/completion records; use train_on")
        if not self.is_chat and (self.train_on != "assistant" or self.chat_template is not None):
            raise ConfigError("train_on and chat_template apply only to messages_field records")

    @property
    def is_chat(self) -> bool:
        """True for chat (messages) records, False for prompt/completion records."""
        return self.messages_field is not None


@dataclass(frozen=True)
class PartSpec:
    """Part ``index`` (0-based) of ``count`` disjoint parts of the input (see
    :mod:`maskprep.sources.parts`), as an array job's task builds it."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"the number of parts must be at least 1, not {self.count}")
        if self.count > MAX_PARTS:
            raise ConfigError(
                f"the number of parts must be at most {MAX_PARTS:,}, not {self.count}"
            )
        if not 0 <= self.index < self.count:
            raise ConfigError(
                f"part index {self.index} is outside 0..{self.count - 1} for {self.count} parts"
            )


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``maskprep.build`` needs; ``batch_size`` is documents encoded per batch."""

    source: SourceConfig
    tokenizer: TokenizerConfig
    shape: ShapeConfig
    output: OutputConfig
    batch_size: int = 1000
    sft: SFTConfig | None = None
    #: Build only this part of the input (array jobs); ``None`` builds all of it. Recorded in
    #: the manifest's own "part" entry, so that the parts of one build share a config.
    part: PartSpec | None = field(default=None, metadata=NOT_RECORDED)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.batch_size * self.shape.max_length > MAX_BATCH_POSITIONS:
            # A batch of documents becomes one Arrow record batch of up to batch_size rows of up
            # to max_length positions; past int32 offsets it cannot be written at all.
            raise ConfigError(
                f"batch_size {self.batch_size} × max_length {self.shape.max_length} = "
                f"{self.batch_size * self.shape.max_length:,} positions, past the "
                f"{MAX_BATCH_POSITIONS:,} an Arrow record batch can hold (int32 list offsets); "
                "lower batch_size"
            )
        if self.shape.strategy == "pack" and self.tokenizer.padding_side == "left":
            raise ConfigError(
                "packed rows are always padded on the right; padding_side 'left' "
                "does not apply to strategy 'pack'"
            )
        if self.sft is not None:
            _check_sft_combination(self)

    @property
    def resolved_tokenizer(self) -> TokenizerConfig:
        """:attr:`tokenizer` as the build applies it: ``add_eos`` unset is turned on for plain
        documents packed (strategy ``pack``): without EOS the documents of a row run into each
        other and the model never sees where one ends. What the build encodes with, what the
        manifest records and what the tokenizer cache is keyed by."""
        if self.shape.strategy == "pack" and self.sft is None and self.tokenizer.add_eos is None:
            return dataclasses.replace(self.tokenizer, add_eos=True)
        return self.tokenizer

    def to_manifest(self) -> dict[str, Any]:
        """The resolved configuration as it goes into the manifest: every field but those marked
        :data:`NOT_RECORDED` (the output path, guards, the part)."""
        data = _recorded(self)
        data["tokenizer"] = _recorded(self.resolved_tokenizer)
        data["shape"]["pack_algorithm"] = self.shape.resolved_pack_algorithm
        data["source"]["inputs"] = list(self.source.inputs)
        if self.shape.buckets is not None:
            data["shape"]["buckets"] = list(self.shape.buckets)
        return data


def _check_sft_combination(config: BuildConfig) -> None:
    """Options that cannot work with SFT records, refused before any data is read."""
    if config.shape.overflow == "split":
        # A window holding only prompt tokens would train nothing, and one holding the middle of
        # a completion would train it without its prompt.
        raise ConfigError(
            "overflow 'split' cannot keep prompts with their completions; "
            "use 'truncate' (cuts the prompt from the left first), 'drop' or 'error'"
        )
    if config.sft is not None and config.sft.is_chat and config.tokenizer.add_eos:
        raise ConfigError(
            "add_eos does not apply to chat records: the chat template ends every turn itself"
        )


def parse_size(text: str) -> int:
    """Parse a byte size such as ``512``, ``64K``, ``256M`` or ``1G`` (powers of 1024), rounded
    down to whole bytes; from 1 byte to :data:`MAX_SIZE`."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    multiplier = 1
    if cleaned and cleaned[-1] in units:
        multiplier = units[cleaned[-1]]
        cleaned = cleaned[:-1]
    try:
        # Decimal, not float: exact for every size, and NaN or infinity is caught here rather
        # than by int() later.
        number = Decimal(cleaned.strip())
    except (DecimalException, ValueError):
        raise ConfigError(f"cannot read {text!r} as a size; use e.g. 500M or 2G") from None
    if not number.is_finite():
        raise ConfigError(f"size {text!r} is not a number of bytes; use e.g. 500M or 2G")
    # Compared before multiplying: 1e999999999 is finite, and its product would overflow.
    if number > MAX_SIZE // multiplier:
        raise ConfigError(f"size {text!r} is past the largest size, {MAX_SIZE:,} bytes (1 EiB)")
    if number < Decimal(1) / multiplier:  # 1/2**k: exact in 28 digits
        raise ConfigError(f"size {text!r} is less than 1 byte")
    # Exact (no rounding up to the next byte): the product needs at most 13 more digits.
    return int(Context(prec=len(number.as_tuple().digits) + 13).multiply(number, multiplier))


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number of bytes, not {value!r}")
    if not 1 <= value <= MAX_SIZE:
        raise ConfigError(f"{name} must be 1 to {MAX_SIZE:,} bytes, not {value}")
