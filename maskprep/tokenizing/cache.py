"""A cache of what a plain-text build takes from a tokenizer, so later builds skip transformers.

Loading a tokenizer through ``AutoTokenizer`` imports transformers and, through it, torch: about
two seconds on a 2-core machine before the first token, longer than encoding a 10 MB corpus takes.
A plain-text build needs much less than the loaded object: the Rust backend as transformers
configured it (the fast path's :class:`~.encoder.EncoderSpec`) and the tokenizer's
identity for the manifest (:class:`~maskprep.tokenizing.loading.TokenizerInfo`).

Once a build has loaded a local tokenizer through transformers and the fast path has given
exactly the ids of ``tokenizer(...)`` on the probe texts, those two are stored as one JSON file.
Its key covers everything that could change them: the bytes of every file in the tokenizer's
directory that transformers may read (model weights aside), the tokenizer options and the path as
given, the versions of maskprep, transformers and tokenizers, and which optional packages that
change how transformers loads tokenizers are installed. A later build whose key matches loads
the backend with ``tokenizers`` alone and writes byte-identical output. Hub names, remote code,
supervised records, settings that name files below the top level and tokenizers without the fast
path always load through transformers. A ``tokenizer.json`` that transformers would load as it is
never reaches the cache: every build reads it directly (:func:`~.loading.load_direct`).

An entry decides the ids a build writes, so it is trusted only as ssh trusts its files: the cache
directory and the entry must belong to the user running the build and be writable by nobody else
(no group or other write bit); anything else is a miss, never loaded. Entries are written 0600 in
a directory created 0700.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import TokenizerConfig
from ..storage import sha256_stream
from .encoder import EncoderSpec
from .loading import TokenizerInfo

#: Bumped whenever what is stored, or how it is derived from the tokenizer, changes.
CACHE_FORMAT = 2

#: Files transformers never reads to build a tokenizer (model weights and exports); large, so
#: not hashed into the key.
WEIGHT_SUFFIXES = frozenset(
    {
        ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf",
        ".ot", ".tflite", ".npz", ".pdparams", ".mlmodel", ".pkl", ".joblib", ".pb",
    }
)  # fmt: skip

#: Files larger than this are keyed by size and modification time instead of content, so that a
#: data file left beside a tokenizer is not read on every build. The largest tokenizer files
#: (tokenizer.json of 250 k-token vocabularies) are around 35 MB.
LARGE_FILE = 128 << 20

#: Optional packages whose presence changes which class transformers loads a tokenizer with
#: (mistral-common for tekken.json) or how it converts one (sentencepiece, tiktoken, protobuf).
OPTIONAL_PACKAGES = ("mistral_common", "sentencepiece", "tiktoken", "google.protobuf")

#: tokenizer_config.json / config.json fields that point transformers at files elsewhere in the
#: directory; a tokenizer using them is not cached (only the files at the top level are keyed).
_REDIRECTS = {"tokenizer_config.json": "fast_tokenizer_files", "config.json": "configuration_files"}


@dataclass(frozen=True)
class CachedTokenizer:
    """A tokenizer as a plain-text build uses it: identity and fast-path spec."""

    info: TokenizerInfo
    spec: EncoderSpec


@dataclass(frozen=True)
class TokenizerCache:
    """Cache entries in ``directory``, one JSON file per key. An entry that cannot be read or
    parsed, or that this user does not own alone (see the module docstring), is a miss; one that
    cannot be written is skipped."""

    directory: Path

    def key(self, config: TokenizerConfig) -> str | None:
        """The cache key for ``config``, or ``None`` when it must load through transformers
        (not a local directory, its own code would run, or it names files below the top level).

        The path is keyed as given, not resolved: transformers matches the name against known
        Hub ids to choose a tokenizer class, so one directory named two ways may load as two
        different tokenizers.
        """
        root = Path(config.name_or_path)
        if config.trust_remote_code or not root.is_dir():
            return None
        from importlib.metadata import PackageNotFoundError, version

        import tokenizers

        try:
            transformers_version = version("transformers")
            if _redirects(root):
                return None
            files = _directory_hashes(root)
        except (PackageNotFoundError, OSError, ValueError):  # transformers will say what is wrong
            return None
        material = {
            "format": CACHE_FORMAT,
            "maskprep": __version__,
            "transformers": transformers_version,
            "tokenizers": tokenizers.__version__,
            "optional": {name: _installed(name) for name in OPTIONAL_PACKAGES},
            "config": dataclasses.asdict(config),
            "files": files,
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> CachedTokenizer | None:
        """The entry stored under ``key``, or ``None``."""
        try:
            entry = json.loads(_read_private(self.directory, f"{key}.json"))
            if entry.get("format") != CACHE_FORMAT or entry.get("key") != key:
                return None
            info = TokenizerInfo(**entry["info"])
            spec = entry["spec"]
            spec = EncoderSpec(
                **{**spec, "prefix": tuple(spec["prefix"]), "suffix": tuple(spec["suffix"])}
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        return CachedTokenizer(info, spec)

    def put(self, key: str, cached: CachedTokenizer) -> bool:
        """Store ``cached`` under ``key`` (atomically, so concurrent builds may race); return
        whether it was written."""
        entry: dict[str, Any] = {
            "format": CACHE_FORMAT,
            "key": key,
            "info": dataclasses.asdict(cached.info),
            "spec": dataclasses.asdict(cached.spec),
        }
        temporary = None
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _private(os.stat(self.directory)):
                return False  # it would not be read back either
            handle, temporary = tempfile.mkstemp(prefix=f".{key}.", dir=self.directory)  # 0600
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(json.dumps(entry))
            os.replace(temporary, self.directory / f"{key}.json")
        except OSError:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            return False
        return True


def _private(info: os.stat_result) -> bool:
    """Whether a file or directory belongs to this user and nobody else may write it."""
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_private(directory: Path, name: str) -> str:
    """The text of ``directory/name``; :class:`ValueError` unless both are private to this user
    and the entry is a regular file (a symlink is not followed)."""
    if not _private(os.stat(directory)):
        raise ValueError(f"{directory}: owned by another user or writable by others")
    handle = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(handle, "rb") as entry:
        info = os.fstat(entry.fileno())
        if not stat.S_ISREG(info.st_mode) or not _private(info):
            raise ValueError(f"{directory / name}: not a private regular file")
        return entry.read().decode("utf-8")


def _directory_hashes(root: Path) -> dict[str, str]:
    """What could change the tokenizer transformers builds from ``root``: the sha256 of every file
    it may read (the top-level files but model weights and hidden files, and the extra chat
    templates), and for a file too large to be a tokenizer's, its size and modification time."""
    candidates = [p for p in root.iterdir() if p.is_file()]
    templates = root / "additional_chat_templates"
    if templates.is_dir():
        candidates += [p for p in templates.iterdir() if p.is_file()]
    hashes = {}
    for path in sorted(candidates):
        if path.name.startswith(".") or path.suffix in WEIGHT_SUFFIXES:
            continue
        name = path.relative_to(root).as_posix()
        stat = path.stat()
        if stat.st_size > LARGE_FILE:
            hashes[name] = f"size {stat.st_size}, modified {stat.st_mtime_ns}"
        else:
            with open(path, "rb") as handle:  # hashlib.file_digest is Python 3.11+
                hashes[name] = sha256_stream(handle)
    return hashes


def _redirects(root: Path) -> bool:
    """Whether the tokenizer's settings name files that transformers reads from elsewhere."""
    for name, field in _REDIRECTS.items():
        path = root / name
        if path.is_file() and path.stat().st_size <= LARGE_FILE:
            settings = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(settings, dict) and settings.get(field):
                return True
    return False


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False
