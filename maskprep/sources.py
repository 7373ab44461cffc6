"""Records from text and JSONL inputs, each with its ``file:line`` provenance.

Inputs are files, directories (searched recursively for known extensions), globs, or ``-`` for
standard input; gzip, bzip2 and zstd are recognised by their magic bytes, so a misnamed or piped
compressed stream still reads. Every line is accounted for: it becomes a :class:`Record`, a
:class:`Rejected` (the caller applies the bad-record policy) or a counted blank line.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import io
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .config import PartSpec, SFTConfig, SourceConfig
from .errors import ConfigError, DataError
from .parts import FileRange, head_line, open_range, plan_part

STDIN = "-"
STDIN_NAME = "<stdin>"
TEXT_EXTENSIONS = (".txt", ".text")
JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".json")
COMPRESSED_EXTENSIONS = (".gz", ".bz2", ".zst")

_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: Message roles a chat record may use.
KNOWN_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class PromptCompletion:
    """A supervised record: the prompt (context, not trained) and the completion (trained)."""

    prompt: str
    completion: str

    def as_json(self) -> dict[str, object]:
        """The record as plain JSON data, for rejects."""
        return {"prompt": self.prompt, "completion": self.completion}


@dataclass(frozen=True)
class Message:
    """One chat turn: a known role and its text."""

    role: str
    content: str


@dataclass(frozen=True)
class Conversation:
    """A chat record: its messages in order, at least one."""

    messages: tuple[Message, ...]

    def as_dicts(self) -> list[dict[str, str]]:
        """The messages as ``{"role", "content"}`` dicts, the form chat templates read."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def as_json(self) -> dict[str, object]:
        """The record as plain JSON data, for rejects."""
        return {"messages": self.as_dicts()}


SFTPayload = PromptCompletion | Conversation


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


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Resolve paths, directories and globs to an ordered list of files (``-`` kept as is).

    Directories are searched recursively for files with a known extension, in sorted order, so the
    same tree always gives the same order. A path or glob that matches nothing is an error.
    """
    files: list[str] = []
    for item in inputs:
        if item == STDIN:
            files.append(item)
        elif os.path.isdir(item):
            found = sorted(
                str(p) for p in Path(item).rglob("*") if p.is_file() and _known_extension(p.name)
            )
            if not found:
                raise ConfigError(f"{item}: directory holds no .txt or .jsonl files")
            files.extend(found)
        elif os.path.exists(item):
            files.append(item)
        elif glob.has_magic(item):
            matched = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not matched:
                raise ConfigError(f"{item}: no file matches this pattern")
            files.extend(matched)
        else:
            raise ConfigError(f"{item}: no such file or directory")
    if files.count(STDIN) > 1:
        raise ConfigError("standard input ('-') can be read only once")
    return files


def _strip_compression(name: str) -> str:
    lowered = name.lower()
    for ext in COMPRESSED_EXTENSIONS:
        if lowered.endswith(ext):
            return lowered[: -len(ext)]
    return lowered


def _known_extension(name: str) -> bool:
    return _strip_compression(name).endswith(TEXT_EXTENSIONS + JSONL_EXTENSIONS)


def format_from_name(name: str) -> str | None:
    """``"text"`` or ``"jsonl"`` from a file name's extension (compression suffix ignored)."""
    base = _strip_compression(name)
    if base.endswith(JSONL_EXTENSIONS):
        return "jsonl"
    if base.endswith(TEXT_EXTENSIONS):
        return "text"
    return None


class _HashingReader(io.RawIOBase):
    """Counts and hashes the raw bytes that pass through, so inputs are read exactly once."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        # read1 returns what is there: a pipe's records are processed as they arrive, instead
        # of waiting for a whole buffer (or the end of the stream).
        read = getattr(self._raw, "read1", self._raw.read)
        data = read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.size += n
        return n


def _decompressed(stream: io.BufferedReader) -> BinaryIO:
    head = stream.peek(4)[:4]
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    if head.startswith(_BZIP2_MAGIC):
        return bz2.BZ2File(stream)  # type: ignore[return-value]
    if head.startswith(_ZSTD_MAGIC):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return io.BufferedReader(reader)  # type: ignore[arg-type]
    return stream  # type: ignore[return-value]


def _sniff(first_line: bytes | None) -> str:
    """Guess the format from the first non-blank line: a JSON object means JSONL."""
    if first_line is None:
        return "text"
    stripped = first_line.strip().lstrip(b"\xef\xbb\xbf")
    if stripped.startswith(b"{"):
        try:
            return "jsonl" if isinstance(json.loads(stripped), dict) else "text"
        except ValueError:
            return "jsonl"  # looks like JSON; let the parser name the exact problem and line
    return "text"


def _field(obj: dict, path: tuple[str, ...]) -> object:
    value: object = obj
    for i, key in enumerate(path):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(".".join(path[: i + 1]))
        value = value[key]
    return value


def _string_field(obj: dict, name: str) -> str:
    """The string at dotted path ``name``; ``ValueError`` with the reason when it is missing or
    not a string."""
    try:
        value = _field(obj, tuple(name.split(".")))
    except KeyError as exc:
        raise ValueError(f"missing field '{exc.args[0]}'") from None
    if not isinstance(value, str):
        raise ValueError(f"field '{name}' is {_json_type(value)}, expected string")
    return value


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


class SourceReader:
    """Reads every input in order and yields :class:`Record` and :class:`Rejected` items.

    ``stats`` holds one :class:`InputStats` per input, complete once the iteration has finished.
    """

    def __init__(
        self,
        config: SourceConfig,
        stdin: BinaryIO | None = None,
        sft: SFTConfig | None = None,
        part: PartSpec | None = None,
    ) -> None:
        self.config = config
        self.sft = sft
        self.files = expand_inputs(config.inputs)
        #: With ``part``: the byte ranges this reader reads, one per entry of ``files``.
        self.ranges: list[FileRange] | None = None
        self._range: FileRange | None = None
        if part is not None:
            self.ranges = plan_part(self.files, part)
            self.files = [r.path for r in self.ranges]
        self.stats: list[InputStats] = []
        self._stdin = stdin
        self._bytes_done = 0
        self._current: _HashingReader | None = None

    @property
    def bytes_total(self) -> int | None:
        """Total size of the inputs in bytes, or ``None`` when one of them is standard input."""
        if STDIN in self.files:
            return None
        if self.ranges is not None:
            return sum(r.end - r.start for r in self.ranges)
        return sum(os.path.getsize(f) for f in self.files)

    @property
    def bytes_read(self) -> int:
        """Raw input bytes consumed so far, for progress reporting."""
        return self._bytes_done + (self._current.size if self._current else 0)

    def __iter__(self) -> Iterator[Record | Rejected]:
        for index, name in enumerate(self.files):
            # A file may be listed twice; each listing has its own range.
            self._range = self.ranges[index] if self.ranges is not None else None
            yield from self._read_one(name)

    def _open(self, name: str) -> BinaryIO:
        if name == STDIN:
            import sys

            return self._stdin if self._stdin is not None else sys.stdin.buffer
        try:
            if self._range is not None:
                return open_range(self._range)
            return open(name, "rb")
        except OSError as exc:
            raise ConfigError(f"{name}: cannot open: {exc.strerror}") from None

    def _read_one(self, name: str) -> Iterator[Record | Rejected]:
        display = STDIN_NAME if name == STDIN else name
        stats = InputStats(path=display)
        raw = self._open(name)
        hashing = _HashingReader(raw)
        self._current = hashing
        try:
            stream = _decompressed(io.BufferedReader(hashing, buffer_size=1 << 20))
            part = self._range
            lines = enumerate(stream, start=part.first_line if part is not None else 1)
            fmt = self.config.input_format
            if fmt == "auto":
                fmt = (None if name == STDIN else format_from_name(name)) or ""
            if not fmt and part is not None and part.start > 0:
                fmt = _sniff(head_line(name))  # as the whole file would be read
            pending: list[tuple[int, bytes]] = []
            if not fmt:
                first = None
                for number, line in lines:
                    pending.append((number, line))
                    if line.strip():
                        first = line
                        break
                fmt = _sniff(first)
            stats.format = fmt
            if fmt == "text" and self.sft is not None:
                raise ConfigError(
                    f"{display}: read as plain text, but supervised records need JSONL objects"
                )
            parse = self._parse_text if fmt == "text" else self._parse_jsonl
            for number, line in itertools.chain(pending, lines):
                item = parse(display, number, line)
                if item is None:
                    stats.blank_lines += 1
                    continue
                stats.records += 1
                yield item
        except (OSError, EOFError) as exc:
            # A corrupt compressed stream or a failing disk: nothing after this point can be read.
            where = f"{display}:{stats.records + stats.blank_lines + 1}"
            raise DataError(f"{where}: cannot read input: {exc}") from None
        except Exception as exc:
            if type(exc).__name__ != "ZstdError":
                raise
            where = f"{display}:{stats.records + stats.blank_lines + 1}"
            raise DataError(f"{where}: cannot read input: corrupt zstd data ({exc})") from None
        finally:
            if name != STDIN:
                raw.close()
            stats.size = hashing.size
            stats.sha256 = hashing.sha256.hexdigest()
            self._bytes_done += hashing.size
            self._current = None
            self.stats.append(stats)

    @staticmethod
    def _decode(source: str, number: int, line: bytes) -> str | Rejected:
        body = line.rstrip(b"\n").rstrip(b"\r")
        if number == 1:
            body = body.removeprefix(b"\xef\xbb\xbf")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = body.decode("utf-8", errors="backslashreplace")
            return Rejected(source, number, f"invalid UTF-8 at byte {exc.start}", raw)

    def _parse_text(self, source: str, number: int, line: bytes) -> Record | Rejected | None:
        text = self._decode(source, number, line)
        if isinstance(text, Rejected):
            return text
        if not text.strip():
            return None
        return Record(text, source, number)

    def _parse_jsonl(self, source: str, number: int, line: bytes) -> Record | Rejected | None:
        text = self._decode(source, number, line)
        if isinstance(text, Rejected):
            return text
        if not text.strip():
            return None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return Rejected(source, number, f"invalid JSON: {exc.msg} (column {exc.colno})", text)
        if not isinstance(obj, dict):
            return Rejected(source, number, f"expected a JSON object, got {_json_type(obj)}", text)
        if self.sft is not None:
            payload = sft_payload(obj, self.sft)
            if isinstance(payload, str):
                return Rejected(source, number, payload, text, without_labels=True)
            return Record("", source, number, payload)
        try:
            value = _string_field(obj, self.config.text_field)
        except ValueError as exc:
            return Rejected(source, number, str(exc), text)
        if not value.strip():
            return Rejected(source, number, f"field '{self.config.text_field}' is empty", text)
        return Record(value, source, number)


def sft_payload(obj: dict, sft: SFTConfig) -> SFTPayload | str:
    """The supervised parts of one JSON object, or the reason they cannot be used."""
    if sft.is_chat:
        assert sft.messages_field is not None
        return _conversation(obj, sft.messages_field)
    assert sft.prompt_field is not None and sft.completion_field is not None
    try:
        parts = [_string_field(obj, name) for name in (sft.prompt_field, sft.completion_field)]
    except ValueError as exc:
        return str(exc)
    if not parts[1].strip():
        return f"field '{sft.completion_field}' is empty: nothing to train on"
    return PromptCompletion(parts[0], parts[1])


def _conversation(obj: dict, name: str) -> Conversation | str:
    try:
        value = _field(obj, tuple(name.split(".")))
    except KeyError as exc:
        return f"missing field '{exc.args[0]}'"
    if not isinstance(value, list):
        return f"field '{name}' is {_json_type(value)}, expected array of messages"
    if not value:
        return f"field '{name}' is an empty array: no messages"
    messages = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            return f"{where} is {_json_type(item)}, expected object with role and content"
        for key in ("role", "content"):
            if key not in item:
                return f"{where} has no '{key}'"
        role, content = item["role"], item["content"]
        if role not in KNOWN_ROLES:
            shown = json.dumps(role, ensure_ascii=False)
            return f"{where}.role {shown} is not one of {', '.join(KNOWN_ROLES)}"
        if not isinstance(content, str):
            return f"{where}.content is {_json_type(content)}, expected string"
        messages.append(Message(role, content))
    return Conversation(tuple(messages))
