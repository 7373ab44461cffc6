"""What a shard says about its own rows: the facts of its manifest that a reader needs, written
into every shard's schema metadata (Parquet and Arrow IPC alike) under the key ``maskprep``.

A shard copied away from its ``_maskprep.json`` (one file handed to a colleague, shards moved into
another tree, a table re-written by a pipeline that kept the schema) still tells ``inspect``,
``verify`` and :meth:`Collator.for_output <maskprep.collate.Collator.for_output>` its strategy,
whether its rows are packs, the pad id and padding side, the EOS id, and which tokenizer made it.
The value is one JSON object (sorted keys, no spaces, so equal builds give equal bytes)::

    {"add_eos":true,"bos_token_id":1,"buckets":null,"contract":1,"eos_token_id":2,
     "max_length":512,"maskprep_version":"0.1.0","model_max_length":null,"packed":true,
     "pad_token_id":0,"padding_side":"right","records":"text","strategy":"pack",
     "tokenizer":"meta-llama/Llama-3.2-1B","tokenizer_fingerprint":"9f2c…",
     "tokenizer_revision":null,"vocab_size":128256}

Where a shard's metadata and its manifest disagree, the shard is not the one the build wrote:
readers refuse it (``inspect`` fails ``shards_match_manifest``). A shard without the key (another
tool's, or one written before maskprep recorded it) is read as before: its layout is inferred.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from .errors import DataError
from .token_ids import token_id_problem

if TYPE_CHECKING:
    import pyarrow as pa

    from .config import BuildConfig
    from .output.manifest import Manifest, RecordedConfig
    from .tokenizing.loading import TokenizerInfo

#: The schema metadata key the contract is stored under.
METADATA_KEY = b"maskprep"
#: Version of the column contract (docs/contract.md): bumped when a column or an invariant
#: changes meaning, so that a reader can tell rows it does not know how to read.
COLUMN_CONTRACT = 1
#: What the records of a build were: plain text, prompt/completion pairs, chat conversations.
RECORD_KINDS = ("text", "prompt_completion", "chat")


@dataclass(frozen=True)
class ShardContract:
    """What a shard's rows are, as its manifest says (see the module docstring).

    ``padding_side`` is the side the rows are padded on (``right`` for packs, whatever the
    tokenizer's), ``add_eos`` whether every document (or completion) was made to end with EOS,
    ``records`` one of :data:`RECORD_KINDS`.
    """

    contract: int
    maskprep_version: str
    strategy: str
    packed: bool
    max_length: int
    buckets: tuple[int, ...] | None
    padding_side: str
    pad_token_id: int
    eos_token_id: int | None
    bos_token_id: int | None
    add_eos: bool
    records: str
    tokenizer: str
    tokenizer_revision: str | None
    tokenizer_fingerprint: str
    vocab_size: int
    model_max_length: int | None

    @classmethod
    def of(
        cls, config: RecordedConfig, tokenizer: TokenizerInfo, maskprep_version: str
    ) -> ShardContract:
        """The contract of rows built with ``config`` and ``tokenizer`` (a manifest's entries)."""
        raw = config.raw
        sft = raw.get("sft") if isinstance(raw, dict) else None
        records = "text"
        if isinstance(sft, dict):
            records = "chat" if sft.get("messages_field") is not None else "prompt_completion"
        asked = raw.get("tokenizer", {}).get("add_eos") if isinstance(raw, dict) else None
        # Unset, it means: after prompt/completion records' completions only.
        add_eos = bool(asked) if asked is not None else records == "prompt_completion"
        packed = config.strategy == "pack"
        return cls(
            contract=COLUMN_CONTRACT,
            maskprep_version=maskprep_version,
            strategy=config.strategy,
            packed=packed,
            max_length=config.max_length,
            buckets=config.buckets,
            padding_side="right" if packed else tokenizer.padding_side,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            # A tokenizer without EOS has none to add (its frame, [SEP], ends the documents).
            add_eos=add_eos and tokenizer.eos_token_id is not None,
            records=records,
            tokenizer=tokenizer.name_or_path,
            tokenizer_revision=tokenizer.revision,
            tokenizer_fingerprint=tokenizer.fingerprint,
            vocab_size=tokenizer.vocab_size,
            model_max_length=tokenizer.model_max_length,
        )

    @classmethod
    def of_manifest(cls, manifest: Manifest) -> ShardContract:
        """The contract every shard a manifest lists should carry."""
        return cls.of(manifest.config, manifest.tokenizer, manifest.maskprep_version)

    @classmethod
    def of_build(cls, config: BuildConfig, tokenizer: TokenizerInfo) -> ShardContract:
        """The contract of the shards a build of ``config`` writes with ``tokenizer``."""
        from ._version import __version__
        from .output.manifest import RecordedConfig

        return cls.of(RecordedConfig.from_build(config), tokenizer, __version__)

    def metadata(self) -> dict[bytes, bytes]:
        """The schema metadata that carries the contract."""
        data = asdict(self)
        data["buckets"] = None if self.buckets is None else list(self.buckets)
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return {METADATA_KEY: text.encode("utf-8")}

    def differences(self, other: ShardContract, theirs: str) -> list[str]:
        """Each field where ``other`` (named ``theirs``) says something else, as
        ``name 'mine' (theirs 'other's')``."""
        return [
            f"{f.name} {getattr(self, f.name)!r} ({theirs} {getattr(other, f.name)!r})"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


def read_contract(schema: pa.Schema, where: str) -> ShardContract | None:
    """The contract in a shard's ``schema`` metadata, or ``None`` when it carries none.

    A value that is not the JSON object maskprep writes is a :class:`~maskprep.errors.DataError`
    naming the shard (``where``) and the field at fault: a shard that claims to be maskprep's and
    cannot say what it holds is not read on guesses.
    """
    from .output.manifest import decode_fields

    metadata = schema.metadata or {}
    value = metadata.get(METADATA_KEY)
    if value is None:
        return None
    try:
        data: Any = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DataError(f"{where}: its maskprep metadata is not a JSON object") from None
    contract = decode_fields(ShardContract, data, where, "maskprep metadata")
    _check_values(contract, where)
    return contract


def _check_values(contract: ShardContract, where: str) -> None:
    """Values a reader acts on must make sense: token ids, a known side and record kind."""
    problems = []
    if contract.contract > COLUMN_CONTRACT:
        problems.append(
            f"contract: column contract {contract.contract} is newer than this maskprep reads "
            f"({COLUMN_CONTRACT})"
        )
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(contract, name)
        problem = None if value is None else token_id_problem(value)
        if problem is not None:
            problems.append(f"{name}: {problem}")
    if contract.padding_side not in ("left", "right"):
        problems.append(f"padding_side: {contract.padding_side!r} is not left or right")
    if contract.records not in RECORD_KINDS:
        problems.append(f"records: {contract.records!r} is not one of {', '.join(RECORD_KINDS)}")
    if contract.packed != (contract.strategy == "pack"):
        problems.append(f"packed: {contract.packed} with strategy {contract.strategy!r}")
    if contract.max_length < 1 or contract.vocab_size < 1:
        problems.append("max_length and vocab_size must be positive")
    if problems:
        raise DataError(f"{where}: maskprep metadata: {problems[0]}")
