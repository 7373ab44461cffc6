"""Object stores and other remote filesystems, through fsspec.

Every fsspec error is translated into a :mod:`maskprep.storage.errors` type naming the URL. On
object stores a directory is a key prefix: it exists when some key is under it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import posixpath
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from .errors import (
    AlreadyExists,
    NotFound,
    Unsupported,
    VersionMismatch,
    is_precondition_failure,
    is_range_past_end,
    translate,
)
from .location import Location, ObjectInfo, WriteResult, capabilities, filesystem, is_temporary


@contextlib.contextmanager
def _errors(url: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise translate(exc, url) from None


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(key)
        if isinstance(value, _dt.datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def _info(location: Location, info: dict[str, Any]) -> ObjectInfo:
    is_dir = info.get("type") == "directory"
    etag = info.get("ETag") or info.get("etag")
    size = 0 if is_dir else int(info.get("size") or 0)
    return ObjectInfo(location, size, is_dir, _mtime(info), str(etag) if etag else None)


def _child(location: Location, fs_name: str) -> Location:
    return Location(location.protocol, fs_name.rstrip("/"), location.options)


def stat(location: Location) -> ObjectInfo:
    """Size, mtime and ETag of an object (or a prefix, as a directory)."""
    fs = filesystem(location)
    with _errors(location.url):
        return _info(location, fs.info(location.path))


def exists(location: Location) -> bool:
    """Whether an object or a non-empty prefix is there."""
    fs = filesystem(location)
    with _errors(location.url):
        return bool(fs.exists(location.path))


def open_read(location: Location, offset: int = 0) -> BinaryIO:
    """A seekable stream over the object; bytes are fetched in blocks as they are read (never
    the whole object first). s3fs pins the ETag it saw at open, so an object replaced while it
    is read fails instead of mixing two versions."""
    fs = filesystem(location)
    with _errors(location.url):
        handle = fs.open(location.path, "rb")
        if offset:
            handle.seek(offset)
    return handle


def read_with_info(location: Location) -> tuple[bytes, ObjectInfo]:
    """A small object's bytes and the description of exactly that version: s3fs reads with
    ``If-Match`` on the ETag it saw at open, so the pair cannot mix two versions."""
    fs = filesystem(location)
    with _errors(location.url), fs.open(location.path, "rb") as handle:
        data = handle.read()
        details = dict(getattr(handle, "details", None) or fs.info(location.path))
    return data, _info(location, details)


def read_range(location: Location, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` in one ranged GET (fewer at the end of the object)."""
    if end <= start:
        return b""
    fs = filesystem(location)
    try:
        return bytes(fs.cat_file(location.path, start=start, end=end))
    except Exception as exc:
        if is_range_past_end(exc):
            return b""  # as a local read past the end gives: S3 answers 416 instead
        raise translate(exc, location.url) from None


def listdir(location: Location) -> list[ObjectInfo]:
    """The objects and sub-prefixes directly under a prefix, sorted, temporaries left out."""
    fs = filesystem(location)
    with _errors(location.url):
        entries = fs.ls(location.path, detail=True)
    found = []
    for entry in entries:
        name = entry["name"].rstrip("/")
        if name == location.path or is_temporary(posixpath.basename(name)):
            continue
        found.append(_info(_child(location, name), entry))
    return sorted(found, key=lambda info: info.name)


def walk(
    location: Location,
    *,
    temporaries: bool = False,
    skip_directory: Callable[[list[str]], bool] | None = None,
) -> Iterator[ObjectInfo]:
    """Every object under a prefix, in key order, temporaries left out unless asked for; a
    "directory" (the keys of one prefix level) whose names ``skip_directory`` rejects is left out
    with all below it."""
    fs = filesystem(location)
    with _errors(location.url):
        found = fs.find(location.path, detail=True)
    if not found:
        raise NotFound(location.url, "no such file, object or prefix")
    skipped: list[str] = []
    if skip_directory is not None:
        names: dict[str, list[str]] = {}
        for name in found:
            parent, _, base = name.rpartition("/")
            names.setdefault(parent, []).append(base)
        skipped = [parent + "/" for parent, inside in names.items() if skip_directory(inside)]
    for name in sorted(found):
        if any(name.startswith(prefix) for prefix in skipped):
            continue
        if temporaries or not is_temporary(posixpath.basename(name)):
            yield _info(_child(location, name), found[name])


def glob(pattern: Location) -> list[ObjectInfo]:
    """Objects matching a glob pattern (``**`` spans prefixes), sorted, temporaries left out."""
    fs = filesystem(pattern)
    with _errors(pattern.url):
        found = fs.glob(pattern.path, detail=True)
    return [
        _info(_child(pattern, name), found[name])
        for name in sorted(found)
        if not is_temporary(posixpath.basename(name))
    ]


def delete(location: Location) -> None:
    """Delete one object; absent already is fine (S3 deletes are idempotent anyway)."""
    fs = filesystem(location)
    with _errors(location.url), contextlib.suppress(FileNotFoundError):
        fs.rm_file(location.path)


def delete_many(locations: list[Location]) -> None:
    """Delete objects of one store; S3 sends them in batches of up to 1000 keys a request."""
    if not locations:
        return
    fs = filesystem(locations[0])
    if locations[0].protocol in ("s3", "s3a"):
        with _errors(locations[0].parent.url):
            fs.rm([location.path for location in locations])
        return
    for location in locations:
        delete(location)


def copy(source: Location, target: Location) -> None:
    """Server-side copy within one store (S3 CopyObject: the target appears whole or not)."""
    fs = filesystem(source)
    with _errors(target.url):
        fs.copy(source.path, target.path)


#: The largest range one UploadPartCopy may copy (S3's limit for a part).
_PART_COPY = 5 << 30


def copy_if_absent(source: Location, target: Location, size: int) -> None:
    """Server-side copy on S3 that creates the target only if it is absent: a multipart upload
    whose parts are copied from the source (``UploadPartCopy``) and completed with
    ``If-None-Match: *``; :class:`AlreadyExists` if the target exists by then. The upload is
    aborted on any failure, so nothing partial is left behind."""
    fs = filesystem(target)
    bucket, key, _ = fs.split_path(target.path)
    source_bucket, source_key, _ = fs.split_path(source.path)
    with _errors(target.url):
        upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        starts = range(0, max(size, 1), _PART_COPY)
        for number, start in enumerate(starts, start=1):
            extra = {}
            if size > _PART_COPY:
                extra["CopySourceRange"] = f"bytes={start}-{min(start + _PART_COPY, size) - 1}"
            answer = fs.call_s3(
                "upload_part_copy",
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                CopySource={"Bucket": source_bucket, "Key": source_key},
                **extra,
            )
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        fs.call_s3(
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    except Exception as exc:
        with contextlib.suppress(Exception):
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload)
        if is_precondition_failure(exc):
            raise AlreadyExists(target.url, "already exists") from None
        raise translate(exc, target.url) from None
    fs.invalidate_cache(target.path)


def _s3(location: Location, operation: str) -> tuple[Any, str, str]:
    if location.protocol not in ("s3", "s3a") or not capabilities(location).compare_and_swap:
        raise Unsupported(location.url, f"this store cannot {operation} only if its ETag matches")
    fs = filesystem(location)
    bucket, key, _ = fs.split_path(location.path)
    return fs, bucket, key


def replace_if_match(location: Location, data: bytes, etag: str) -> WriteResult:
    """Replace a small object only if its ETag is still ``etag`` (S3 ``If-Match``)."""
    fs, bucket, key = _s3(location, "replace an object")
    try:
        response = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=etag)
    except Exception as exc:
        if is_precondition_failure(exc):
            raise VersionMismatch(location.url, "changed since it was read") from None
        raise translate(exc, location.url) from None
    fs.invalidate_cache(location.path)
    digest = hashlib.sha256(data).hexdigest()
    return WriteResult(location, len(data), digest, response.get("ETag"))
