"""Records from text and JSONL inputs, each with its ``file:line`` provenance.

Every line is accounted for: it becomes a :class:`Record`, a :class:`Rejected` (the caller applies
the bad-record policy) or a counted blank line. Inputs are found by :mod:`.inputs` (objects of a
store too); supervised records are parsed by :mod:`.sft`. The stream comes in batches
(:func:`batched`): records to encode together, with the records rejected among them travelling
beside them, so that whoever consumes a batch applies the bad-record policy (:class:`RejectPolicy`,
which also keeps the read side's counts for a build's totals and resume points) in input order.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from .. import storage
from ..config import PartSpec, RejectLimit, SFTConfig, SourceConfig
from ..errors import BadRecordError, ConfigError, DataError
from ..storage import StorageOptions
from .inputs import (
    STDIN,
    STDIN_NAME,
    HashingReader,
    Overlong,
    capped_lines,
    decompressed,
    expand_inputs,
    format_from_name,
    open_input,
    sample,
    size_of,
    sniff_format,
)
from .parts import FileRange, PlannedFile, open_range, plan_part, planned_files
from .sft import (
    JSONProblem,
    SFTPayload,
    json_type,
    lone_surrogate,
    parse_json,
    payload_surrogate,
    sft_payload,
    string_field,
)


@dataclass(frozen=True)
class Record:
    """One usable document: its text and where it came from.

    Supervised records carry their parts in ``payload`` instead, and ``text`` is empty.
    """

    text: str
    source: str
    line: int
    payload: SFTPayload | None = None

    @property
    def location(self) -> str:
        """``file:line`` of the record, for error messages and rejects."""
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Rejected:
    """A record that cannot be used, with the reason and the raw line as read."""

    source: str
    line: int
    reason: str
    raw: str
    #: True for a supervised record that yields no trained token (counted apart in the manifest).
    without_labels: bool = False

    @property
    def location(self) -> str:
        """``file:line`` of the record, for error messages and rejects."""
        return f"{self.source}:{self.line}"


@dataclass
class InputStats:
    """What was read from one input: path, size in bytes as stored, sha256 of those bytes."""

    path: str
    size: int = 0
    sha256: str = ""
    format: str = ""
    records: int = 0
    blank_lines: int = 0


@dataclass(frozen=True)
class SourcePosition:
    """Where a reader is between two items: reading input ``index`` at line ``line`` next, having
    counted ``records`` (records and rejected ones) and ``blank_lines`` of it so far, and read
    ``raw_bytes`` of its raw bytes, whose sha256 is ``raw_sha256`` (the inputs before it are
    ``done``). A resumed build starts its reader here (see :mod:`maskprep.resume`): the raw bytes
    cover every line before ``line``, so that they can be checked unchanged without being
    parsed."""

    index: int
    line: int
    records: int = 0
    blank_lines: int = 0
    raw_bytes: int = 0
    raw_sha256: str = hashlib.sha256().hexdigest()
    done: tuple[InputStats, ...] = ()


class SourceReader:
    """Reads every input in order and yields :class:`Record` and :class:`Rejected` items.

    ``stats`` holds one :class:`InputStats` per input, complete once the iteration has finished.
    :meth:`start_at` (a :class:`SourcePosition`) resumes reading there: the inputs before it and
    its input's lines before it are read only to be hashed and counted, never parsed (see
    :meth:`unchanged_up_to` to check first that they are still what they were).
    """

    def __init__(
        self,
        config: SourceConfig,
        stdin: BinaryIO | None = None,
        sft: SFTConfig | None = None,
        part: PartSpec | None = None,
        storage_options: StorageOptions | None = None,
    ) -> None:
        self.config = config
        self._start: SourcePosition | None = None
        self.sft = sft
        self._options = storage_options
        self.files = expand_inputs(config.inputs, storage_options)
        #: With ``part``: the byte ranges this reader reads, one per entry of ``files``.
        self.ranges: list[FileRange] | None = None
        #: With ``part``: every input file, with the size and modification time the plan used.
        self.planned: list[PlannedFile] | None = None
        self._range: FileRange | None = None
        if part is not None:
            self.planned = planned_files(self.files, storage_options)
            self.ranges = plan_part(self.files, part, self.planned, storage_options)
            self.files = [r.path for r in self.ranges]
        self.stats: list[InputStats] = []
        if STDIN in self.files and stdin is None:
            stdin = _process_stdin()
            if stdin is None:
                raise ConfigError("standard input is closed; '-' reads the input from it")
        self._stdin = stdin
        self._bytes_done = 0
        self._current: HashingReader | None = None
        self._reading = InputStats(path="")
        #: The input being read (``None`` before reading begins).
        self._index: int | None = None

    @property
    def bytes_total(self) -> int | None:
        """Total size of the inputs in bytes, or ``None`` when one of them is standard input."""
        if STDIN in self.files:
            return None
        if self.ranges is not None:
            return sum(r.end - r.start for r in self.ranges)
        return sum(size_of(f, self._options) for f in self.files)

    @property
    def bytes_read(self) -> int:
        """Raw input bytes consumed so far, for progress reporting."""
        return self._bytes_done + (self._current.size if self._current else 0)

    def __iter__(self) -> Iterator[Record | Rejected]:
        start = self._start
        for index, name in enumerate(self.files):
            # A file may be listed twice; each listing has its own range.
            self._range = self.ranges[index] if self.ranges is not None else None
            self._index = index
            if start is not None and index < start.index:
                self._hash_only(name, start.done[index])
                continue
            resume = start if start is not None and index == start.index else None
            yield from self._read_one(name, resume)
        self._index = len(self.files)

    def start_at(self, start: SourcePosition) -> None:
        """Begin reading at ``start`` (before iterating; see :meth:`unchanged_up_to`)."""
        self._start = start

    def position(self) -> SourcePosition:
        """Where this reader is now, between two items (see :class:`SourcePosition`)."""
        index = self._index
        if index is None:
            return self._start or SourcePosition(0, self._first_line(0))
        done = tuple(self.stats)
        current = self._current
        if current is None or index >= len(self.files):
            first = self._first_line(index)
            return SourcePosition(index, first, done=done)
        stats = self._reading
        line = self._first_line(index) + stats.records + stats.blank_lines
        return SourcePosition(
            index,
            line,
            stats.records,
            stats.blank_lines,
            current.size,
            current.sha256.copy().hexdigest(),
            done,
        )

    def _first_line(self, index: int) -> int:
        if self.ranges is not None and index < len(self.ranges):
            return self.ranges[index].first_line
        return 1

    def unchanged_up_to(self, start: SourcePosition) -> bool:
        """Whether the inputs still hold, up to ``start``, the bytes they held when a reader was
        there: every input before it whole (its sha256), and its own input's first
        ``raw_bytes``. Read only, never parsed; standard input cannot be read twice (``False``)."""
        if STDIN in self.files or start.index > len(self.files):
            return False
        if len(start.done) != min(start.index, len(self.files)):
            return False
        for index in range(start.index):
            self._range = self.ranges[index] if self.ranges is not None else None
            size, digest = self._raw_digest(self.files[index], None)
            done = start.done[index]
            if (size, digest) != (done.size, done.sha256):
                return False
        if start.index == len(self.files):
            return start.raw_bytes == 0
        self._range = self.ranges[start.index] if self.ranges is not None else None
        size, digest = self._raw_digest(self.files[start.index], start.raw_bytes)
        return (size, digest) == (start.raw_bytes, start.raw_sha256)

    def _raw_digest(self, name: str, limit: int | None) -> tuple[int, str]:
        """Size and sha256 of an input's raw bytes (its first ``limit`` of them)."""
        sizes: list[int] = []
        with self._open(name) as raw:
            digest = storage.sha256_stream(raw, limit, each=lambda block: sizes.append(len(block)))
        return sum(sizes), digest

    def _hash_only(self, name: str, done: InputStats) -> None:
        """An input wholly before the resume point: hashed (for the manifest), not parsed; its
        counts are those the reader had."""
        size, digest = self._raw_digest(name, None)
        self._bytes_done += size
        self.stats.append(
            InputStats(done.path, size, digest, done.format, done.records, done.blank_lines)
        )

    def _open(self, name: str) -> BinaryIO:
        if name == STDIN:
            assert self._stdin is not None, "found when the reader was made"
            return self._stdin
        try:
            if self._range is not None:
                return open_range(self._range, self._options)
            return open_input(name, self._options)
        except storage.StorageRequestError as exc:
            raise ConfigError(f"{name}: cannot open: {exc.detail}") from None

    def _read_one(
        self, name: str, resume: SourcePosition | None = None
    ) -> Iterator[Record | Rejected]:
        display = STDIN_NAME if name == STDIN else name
        stats = InputStats(path=display)
        raw = self._open(name)
        hashing = HashingReader(raw)
        self._current = hashing
        self._reading = stats
        try:
            stream = decompressed(io.BufferedReader(hashing, buffer_size=1 << 20))
            lines = capped_lines(stream, self.config.max_record_bytes)
            fmt, pending = self._format(name, lines)
            stats.format = fmt
            if fmt == "text" and self.sft is not None:
                raise ConfigError(
                    f"{display}: read as plain text, but supervised records need JSONL objects"
                )
            parse = self._parse_text if fmt == "text" else self._parse_jsonl
            first = self._range.first_line if self._range is not None else 1
            every = itertools.chain(pending, lines)
            if resume is not None and resume.line > first:
                # The lines before the resume point: read (and hashed), never parsed.
                skipped = resume.line - first
                if sum(1 for _ in itertools.islice(every, skipped)) < skipped:
                    raise DataError(f"{display}: shorter than when the build was interrupted")
                stats.records, stats.blank_lines = resume.records, resume.blank_lines
                first = resume.line
            for number, line in enumerate(every, start=first):
                item = parse(display, number, line)
                if item is None:
                    stats.blank_lines += 1
                    continue
                stats.records += 1
                yield item
        except (OSError, EOFError) as exc:
            # A corrupt or truncated compressed stream (CorruptZstd is an EOFError) or a
            # failing disk: nothing after this point can be read.
            where = f"{display}:{stats.records + stats.blank_lines + 1}"
            raise DataError(f"{where}: cannot read input: {exc}") from None
        finally:
            if name != STDIN:
                raw.close()
            stats.size = hashing.size
            stats.sha256 = hashing.sha256.hexdigest()
            self._bytes_done += hashing.size
            self._current = None
            self.stats.append(stats)

    def _format(
        self, name: str, lines: Iterator[bytes | Overlong]
    ) -> tuple[str, list[bytes | Overlong]]:
        """The input's format, and the lines read to sniff it (still to be parsed)."""
        fmt: str = self.config.input_format
        if fmt == "auto":
            fmt = (None if name == STDIN else format_from_name(name)) or ""
        if fmt:
            return fmt, []
        part = self._range
        if part is not None and not part.whole:
            # From the file's start, as the whole file is read: every part decides alike.
            with open_input(name, self._options) as handle:
                head = sample(capped_lines(handle, self.config.max_record_bytes))
            return sniff_format(head), []
        pending = sample(lines)
        return sniff_format(pending), pending

    def _decode(self, source: str, number: int, line: bytes | Overlong) -> str | Rejected | None:
        """The line's text, or why it is rejected; None for a blank line (skipped)."""
        if isinstance(line, Overlong):
            raw = line.head.decode("utf-8", errors="backslashreplace") + "…"
            limit = self.config.max_record_bytes
            return Rejected(
                source, number, f"line longer than the record limit of {limit:,} bytes", raw
            )
        body = line.rstrip(b"\n").rstrip(b"\r")
        if number == 1:
            body = body.removeprefix(b"\xef\xbb\xbf")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = body.decode("utf-8", errors="backslashreplace")
            return Rejected(source, number, f"invalid UTF-8 at byte {exc.start}", raw)
        return text if text.strip() else None

    def _parse_text(
        self, source: str, number: int, line: bytes | Overlong
    ) -> Record | Rejected | None:
        text = self._decode(source, number, line)
        return text if text is None or isinstance(text, Rejected) else Record(text, source, number)

    def _parse_jsonl(
        self, source: str, number: int, line: bytes | Overlong
    ) -> Record | Rejected | None:
        text = self._decode(source, number, line)
        if text is None or isinstance(text, Rejected):
            return text
        obj = parse_json(text)
        if isinstance(obj, JSONProblem):
            return Rejected(source, number, f"invalid JSON: {obj.reason}", text)
        if not isinstance(obj, dict):
            return Rejected(source, number, f"expected a JSON object, got {json_type(obj)}", text)
        # A lone surrogate can only come from a \ud800-style escape: no tokenizer takes one.
        escaped = "\\u" in text
        if self.sft is not None:
            payload = sft_payload(obj, self.sft)
            if isinstance(payload, str):
                return Rejected(source, number, payload, text, without_labels=True)
            problem = payload_surrogate(payload, self.sft) if escaped else None
            if problem is not None:
                return Rejected(source, number, problem, text)
            return Record("", source, number, payload)
        name = self.config.text_field
        try:
            value = string_field(obj, name)
        except ValueError as exc:
            return Rejected(source, number, str(exc), text)
        if not value.strip():
            return Rejected(source, number, f"field '{name}' is empty", text)
        problem = lone_surrogate(value) if escaped else None
        if problem is not None:
            return Rejected(source, number, f"field '{name}' is not text: {problem}", text)
        return Record(value, source, number)


def _process_stdin() -> BinaryIO | None:
    """This process's standard input as bytes, or ``None`` when it was closed (``<&-``): Python
    then sets ``sys.stdin`` to ``None``."""
    import sys

    return None if sys.stdin is None else sys.stdin.buffer


@dataclass(frozen=True)
class Batch:
    """Up to a batch size of records, and the records rejected while reading them; ``start``:
    where the reader was when the batch began (a resumed build may start there)."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    start: SourcePosition | None = None


def batched(
    items: Iterable[Record | Rejected],
    size: int,
    *,
    stop_at_reject: bool = False,
    position: Callable[[], SourcePosition] | None = None,
) -> Iterator[Batch]:
    """``items`` in batches of ``size`` records; each rejected record goes with the batch being
    filled when it was read. A batch of only rejected records ends the stream when they come
    after the last record.

    With ``stop_at_reject`` (the ``fail`` policy) the first rejected record ends the stream: it
    comes alone in the last batch, and nothing after it is read (the records read before it in
    that batch are not passed on; the build stops there). ``position`` gives where the reader is;
    each batch carries where it began.
    """
    records: list[Record] = []
    rejected: list[Rejected] = []
    iterator = iter(items)
    start = position() if position is not None else None
    for item in iterator:
        if isinstance(item, Rejected):
            if stop_at_reject:
                yield Batch([], [item], start)
                return
            rejected.append(item)
            continue
        records.append(item)
        if len(records) == size:
            yield Batch(records, rejected, start)
            records, rejected = [], []
            # Taken between two items, before the first of the next batch is read.
            start = position() if position is not None else None
    if records or rejected:
        yield Batch(records, rejected, start)


class RejectsPastLimit(DataError):
    """More records were rejected than ``max_rejects`` allows: the build fails as a bad record
    under the ``fail`` policy does (no manifest; its complete shards stay for a resume), publishing
    the rejects file to say why."""


@dataclass
class RejectPolicy:
    """What the read side counts, and the bad-record policy applied to the rejected records as
    they arrive: ``fail`` (no ``write``) raises at the first one, ``skip`` writes each with
    ``write`` (which returns the line written) and counts it, up to ``limit``. ``staged``: the
    build writes beside a finished output it would replace, which a failed build leaves as it
    was, rejects file and all (this build's rejects go with its staging)."""

    write: Callable[[Rejected], str] | None
    limit: RejectLimit | None = None
    staged: bool = False
    documents: int = 0
    rejected: int = 0
    without_labels: int = 0
    #: Told every line written to the rejects file (the resume points keep them).
    log: Callable[[str], None] | None = None

    @property
    def read(self) -> int:
        """Records read so far: used or rejected."""
        return self.documents + self.rejected

    def counts(self) -> dict[str, int]:
        """The counts, for a resume point."""
        return {
            "documents": self.documents,
            "rejected": self.rejected,
            "without_labels": self.without_labels,
        }

    def restore(self, counts: dict[str, int]) -> None:
        """Take up the counts of a resume point."""
        self.documents = int(counts["documents"])
        self.rejected = int(counts["rejected"])
        self.without_labels = int(counts["without_labels"])

    def reject(self, items: list[Rejected]) -> None:
        """Apply the policy to ``items``, in order."""
        for item in items:
            if self.write is None:
                raise BadRecordError(item.location, item.reason)
            self.rejected += 1
            self.without_labels += item.without_labels
            line = self.write(item)
            if self.log is not None:
                self.log(line)
            if self.limit is not None and self.limit.count is not None:
                # A count is known to be passed as soon as it is: no need to read on.
                self.check_limit(item.location, finished=False)

    def check_limit(self, where: str, *, finished: bool) -> None:
        """Raise :class:`RejectsPastLimit` when the rejects are past the limit; a percentage is
        judged only once the input is ``finished``."""
        limit = self.limit
        if limit is None or (limit.percent is not None and not finished):
            return
        read = self.read
        if not limit.exceeded(self.rejected, read):
            return
        share = f" of {read:,} read ({100 * self.rejected / read:.1f}%)" if finished else ""
        after = (
            "the finished output there is left as it was"
            if self.staged
            else "the rejects file says why each was"
        )
        raise RejectsPastLimit(
            f"{where}: {self.rejected:,} records rejected{share}, more than the max_rejects "
            f"limit of {limit}; {after}"
        )
