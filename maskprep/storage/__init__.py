"""Storage: local paths and object-store URLs behind one small facade.

A plain path keeps the plain ``open``/``os.replace`` code path; a URL (``s3://``, ``gs://``,
``az://``, ``hf://`` for reading, ``memory://``) goes through fsspec. Parse once, then call the
operations on the :class:`Location`::

    from maskprep import storage

    out = storage.parse_location("s3://bucket/out", storage.parse_option_items(["anon=false"]))
    with storage.write(out.join("data-00000.parquet")) as sink:
        pyarrow.parquet.write_table(table, sink)      # published only if this block succeeds
    sink.result.sha256                                # hashed as the bytes went out
    storage.put_if_absent(out.join("_maskprep.json"), b"...")   # AlreadyExists if taken

S3 is configured the standard way: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and the AWS config files, read by botocore itself.
See docs/storage.md for the commit protocol built on these operations.
"""

from .errors import (
    AccessDenied,
    AlreadyExists,
    MissingExtra,
    NoSpace,
    NotFound,
    StorageError,
    StorageFailure,
    StorageRequestError,
    Unsupported,
    VersionMismatch,
    is_offline_mode,
)
from .location import Location, local_form, parse_location
from .objects import ObjectInfo, WriteResult, is_temporary
from .operations import (
    copy,
    delete,
    delete_many,
    exists,
    glob,
    listdir,
    make_directory,
    open_read,
    put,
    put_if_absent,
    read_bytes,
    read_range,
    read_with_info,
    replace_if_match,
    stat,
    walk,
    write,
)
from .options import StorageOptions, parse_option_items, parse_options_text
from .protocols import Capabilities, capabilities
from .writers import AtomicWriter

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "AtomicWriter",
    "Capabilities",
    "Location",
    "MissingExtra",
    "NoSpace",
    "NotFound",
    "ObjectInfo",
    "StorageError",
    "StorageFailure",
    "StorageOptions",
    "StorageRequestError",
    "Unsupported",
    "VersionMismatch",
    "WriteResult",
    "capabilities",
    "copy",
    "delete",
    "delete_many",
    "exists",
    "glob",
    "is_offline_mode",
    "is_temporary",
    "listdir",
    "local_form",
    "make_directory",
    "open_read",
    "parse_location",
    "parse_option_items",
    "parse_options_text",
    "put",
    "put_if_absent",
    "read_bytes",
    "read_range",
    "read_with_info",
    "replace_if_match",
    "stat",
    "walk",
    "write",
]
