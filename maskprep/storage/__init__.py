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

from .directories import (
    Entry,
    Held,
    Kind,
    create_directory,
    entries,
    glob,
    hold,
    is_held,
    is_link,
    listdir,
    remove_empty_directory,
    remove_tree,
    sync_directory,
    walk,
)
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
from .location import (
    Location,
    ObjectInfo,
    WriteResult,
    absolute,
    capabilities,
    is_temporary,
    local_form,
    parse_location,
    same_place,
)
from .operations import (
    copy,
    delete,
    delete_many,
    exists,
    link_or_copy,
    move_if_absent,
    open_read,
    open_regular,
    read_bytes,
    read_range,
    read_with_info,
    replace_if_match,
    sha256_of,
    sha256_stream,
    stat,
    version,
)
from .options import StorageOptions, parse_option_items, parse_options_text
from .writers import AtomicWriter, put, put_if_absent, write

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "AtomicWriter",
    "Entry",
    "Held",
    "Kind",
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
    "absolute",
    "capabilities",
    "copy",
    "create_directory",
    "delete",
    "delete_many",
    "entries",
    "exists",
    "glob",
    "hold",
    "is_held",
    "is_link",
    "is_offline_mode",
    "is_temporary",
    "link_or_copy",
    "listdir",
    "local_form",
    "move_if_absent",
    "open_read",
    "open_regular",
    "parse_location",
    "parse_option_items",
    "parse_options_text",
    "put",
    "put_if_absent",
    "read_bytes",
    "read_range",
    "read_with_info",
    "remove_empty_directory",
    "remove_tree",
    "replace_if_match",
    "same_place",
    "sha256_of",
    "sha256_stream",
    "stat",
    "sync_directory",
    "version",
    "walk",
    "write",
]
