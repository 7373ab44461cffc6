"""maskprep.storage on local paths and on a real S3-protocol server (moto on loopback).

Every primitive runs on both; each protection has a hostile case and a negative control that
shows the check would see the failure it guards against.
"""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from maskprep import storage
from maskprep.errors import ConfigError
from maskprep.storage import (
    AccessDenied,
    AlreadyExists,
    MissingExtra,
    NotFound,
    StorageError,
    Unsupported,
    VersionMismatch,
    parse_location,
    parse_option_items,
    parse_options_text,
)
from maskprep.storage.location import filesystem

pytestmark = pytest.mark.integration

MB = 1 << 20
#: s3fs's smallest part size; writers with it go multipart past 5 MB instead of 50 MB.
SMALL_PARTS = parse_option_items(["s3:default_block_size=5242880"])


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> storage.Location:
    """An empty directory or prefix, on local disk or on the S3 server."""
    if request.param == "local":
        return parse_location(str(tmp_path / "out"))
    bucket = request.getfixturevalue("s3_bucket")
    return parse_location(f"s3://{bucket}/out/", SMALL_PARTS)


def _prepare(root: storage.Location) -> None:
    storage.create_directory(root)


def raw_names(root: storage.Location) -> list[str]:
    """Everything under ``root`` as the store itself lists it, hidden names included."""
    if root.is_local:
        return sorted(os.listdir(root.path)) if os.path.isdir(root.path) else []
    import boto3

    bucket, _, prefix = root.path.partition("/")
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return sorted(item["Key"].removeprefix(prefix + "/") for item in listing.get("Contents", []))


def open_uploads(root: storage.Location) -> list[str]:
    """Multipart uploads started and neither completed nor aborted (S3 only)."""
    if root.is_local:
        return []
    import boto3

    bucket = root.path.split("/")[0]
    return [
        u["Key"]
        for u in boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]


# --- locations and options ----------------------------------------------------------------


def test_parse_location_local_and_urls(tmp_path):
    assert parse_location("out/x").is_local
    assert parse_location("out/x").url == "out/x"
    assert parse_location(tmp_path).path == str(tmp_path)
    assert parse_location("file:///data/in.jsonl").path == "/data/in.jsonl"
    s3 = parse_location("S3://bucket/out/")
    assert (s3.protocol, s3.path, s3.url) == ("s3", "bucket/out", "s3://bucket/out")
    assert s3.join("data-00000.parquet").url == "s3://bucket/out/data-00000.parquet"
    assert s3.join("a/b").parent.url == "s3://bucket/out/a"
    assert s3.join("x").name == "x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty path"),
        ("s3://", "no bucket"),
        ("s3:///key", "no bucket"),
        ("file://relative/x", "absolute path"),
        ("simplecache::s3://b/k", "chained"),
        ("s3://b/k::x", "chained"),
    ],
)
def test_parse_location_refuses(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_location(text)


@pytest.mark.parametrize("name", ["", "..", "../x", "a/../b", "/abs", "a//b", "."])
def test_join_refuses_names_that_climb_out(name):
    with pytest.raises(ConfigError, match="not a plain relative name"):
        parse_location("s3://bucket/out").join(name)


def test_options_parse_values_nesting_and_scopes():
    options = parse_option_items(
        [
            "anon=true",
            "endpoint_url=http://127.0.0.1:9000",
            "client_kwargs.region_name=eu-west-1",
            "default_block_size=8388608",
            "s3:requester_pays=false",
            "gs:project=p1",
            "anon=false",  # a later value wins
        ]
    )
    assert options.for_protocol("s3") == {
        "anon": False,
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "default_block_size": 8388608,
        "requester_pays": False,
    }
    assert options.for_protocol("gs")["project"] == "p1"
    assert "requester_pays" not in options.for_protocol("gs")


def test_options_scoped_value_overrides_unscoped_whatever_the_order():
    options = parse_option_items(["s3:anon=true", "anon=false"])
    assert options.for_protocol("s3")["anon"] is True
    assert options.for_protocol("gs")["anon"] is False


def test_options_from_text_json_and_pairs_and_merge():
    env = parse_options_text('{"s3:anon": true, "client_kwargs": {"a": 1}}', source="ENV")
    pairs = parse_options_text("anon=false 'key=a b'", source="ENV")
    assert env.for_protocol("s3") == {"anon": True, "client_kwargs": {"a": 1}}
    assert pairs.for_protocol("s3") == {"anon": False, "key": "a b"}
    merged = env.merged(parse_option_items(["client_kwargs.a=2"]))
    assert merged.for_protocol("s3")["client_kwargs"] == {"a": 2}
    assert not parse_options_text("  ", source="ENV")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["novalue"], "storage option 'novalue': expected key=value"),
        (["=x"], "'' is not a valid option name"),
        (["bad key=1"], "'bad key' is not a valid option name"),
        (["a..b=1"], "'' is not a valid option name"),
        (["1s3:anon=1"], "'1s3' is not a protocol name"),
    ],
)
def test_options_bad_items_say_what_is_wrong(items, message):
    with pytest.raises(ConfigError) as caught:
        parse_option_items(items)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "OPTS: not valid JSON"),
        ("[1, 2]", "OPTS '[1,': expected key=value"),
        ('{"a b": 1}', "OPTS: 'a b' is not a valid option name"),
        ('{"1s3:anon": 1}', "OPTS: '1s3' in '1s3:anon' is not a protocol name"),
        ("anon='unterminated", "OPTS: No closing quotation"),
    ],
)
def test_options_bad_text_names_its_source(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_options_text(text, source="OPTS")
    assert str(caught.value).startswith(message)


# --- optional packages and unknown protocols -----------------------------------------------


def test_missing_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # makes `import s3fs` raise ImportError
    with pytest.raises(MissingExtra) as caught:
        filesystem(parse_location("s3://bucket/in.jsonl"))
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError)
    assert message == (
        "s3://bucket/in.jsonl: this protocol needs the optional package s3fs; "
        "install it with pip install 'maskprep[s3]'"
    )


def test_missing_extra_negative_control():
    pytest.importorskip("s3fs")
    # Without the simulated failure the same call builds a filesystem (no request is sent).
    assert filesystem(parse_location("s3://bucket/in.jsonl")) is not None


def test_unknown_protocol_is_one_line():
    with pytest.raises(StorageError, match=r"^nosuch://b/k: unknown storage protocol 'nosuch'$"):
        storage.stat(parse_location("nosuch://b/k"))


def test_hf_is_read_only_without_touching_the_network():
    with pytest.raises(Unsupported, match="hf:// is read-only"):
        storage.write(parse_location("hf://datasets/someone/data/x.parquet"))


def test_errors_survive_pickling():
    # Ray sends a worker's exception to the driver pickled.
    for error in (NotFound("s3://b/k", "no such bucket"), MissingExtra("s3://b", "s3fs", "s3")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)


# --- atomic writes -------------------------------------------------------------------------


def test_write_commit_publishes_and_hashes_on_the_way(root):
    _prepare(root)
    data = os.urandom(12 * MB + 123)
    target = root.join("data-00000.parquet")
    with storage.write(target) as sink:
        for start in range(0, len(data), MB):
            sink.write(data[start : start + MB])
        assert not storage.exists(target)  # nothing under the final name before commit
    assert sink.result is not None
    assert sink.result.size == len(data)
    assert sink.result.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.read_bytes(target) == data
    assert storage.stat(target).size == len(data)
    assert raw_names(root) == ["data-00000.parquet"]
    assert open_uploads(root) == []


@pytest.mark.parametrize("size", [100, 12 * MB], ids=["single-put", "multipart"])
def test_exception_mid_write_leaves_nothing(root, size):
    _prepare(root)
    target = root.join("data-00000.parquet")
    with pytest.raises(RuntimeError, match="tokenizer blew up"), storage.write(target) as sink:
        sink.write(os.urandom(size))
        raise RuntimeError("tokenizer blew up")
    assert not storage.exists(target)
    assert raw_names(root) == []  # no partial object, no local temporary file
    assert open_uploads(root) == []  # the multipart upload was aborted, not left behind


def test_negative_control_fsspec_with_block_publishes_partial_object(s3_bucket):
    """What the writer protects against: fsspec closes (so completes the upload) on error."""
    location = parse_location(f"s3://{s3_bucket}/out/", SMALL_PARTS)
    fs = filesystem(location)
    for size in (100, 12 * MB):
        path = f"{s3_bucket}/out/partial-{size}"
        with pytest.raises(RuntimeError), fs.open(path, "wb") as handle:
            handle.write(b"x" * size)
            raise RuntimeError("mid-write")
        assert fs.info(path)["size"] == size  # a partial object was published
    assert raw_names(location) == ["partial-100", f"partial-{12 * MB}"]


def test_close_or_garbage_collection_without_commit_discards(root):
    _prepare(root)
    closed = storage.write(root.join("closed.bin"))
    closed.write(os.urandom(6 * MB))
    closed.close()
    dropped = storage.write(root.join("dropped.bin"))
    dropped.write(os.urandom(6 * MB))
    del dropped
    gc.collect()
    assert raw_names(root) == []
    assert open_uploads(root) == []
    with pytest.raises(ValueError, match="commit of an aborted writer"):
        closed.commit()


def test_pyarrow_writes_through_the_writer(root):
    _prepare(root)
    table = pa.table({"input_ids": [[1, 2, 3], [4, 5]], "length": pa.array([3, 2], pa.int32())})
    target = root.join("data-00000.parquet")
    with storage.write(target) as sink:
        writer = pq.ParquetWriter(sink, table.schema)
        writer.write_table(table)
        writer.close()
    with storage.open_read(target) as handle:
        assert pq.read_table(handle).equals(table)
    assert sink.result.sha256 == hashlib.sha256(storage.read_bytes(target)).hexdigest()


@pytest.mark.parametrize("size", [0, 100, 12 * MB], ids=["empty", "single-put", "multipart"])
def test_exclusive_write_refuses_a_second_and_keeps_the_first(root, size):
    _prepare(root)
    target = root.join("maskprep.json")
    first = os.urandom(size)
    with storage.write(target, exclusive=True) as sink:
        sink.write(first)
    second = storage.write(target, exclusive=True)
    second.write(b"y" * size)
    with pytest.raises(AlreadyExists, match=r"maskprep.json: already exists$"):
        second.commit()
    assert storage.read_bytes(target) == first
    assert raw_names(root) == ["maskprep.json"]
    assert open_uploads(root) == []


def test_negative_control_s3fs_exclusive_mode_lets_an_empty_object_through(s3_bucket):
    """Why the writer sends empty objects itself: s3fs's "xb" writes them with touch()."""
    fs = filesystem(parse_location(f"s3://{s3_bucket}/k"))
    for _ in range(2):
        with fs.open(f"{s3_bucket}/empty", "xb"):
            pass  # the second create-only write is not refused
    assert fs.exists(f"{s3_bucket}/empty")


def test_local_write_never_follows_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "data-00000.parquet").symlink_to(victim)
    storage.put(parse_location(str(out / "data-00000.parquet")), b"shard")
    assert victim.read_bytes() == b"precious"
    assert not (out / "data-00000.parquet").is_symlink()
    # A dangling link takes the name: a create-only write is refused, not written through.
    (out / "maskprep.json").symlink_to(tmp_path / "nowhere")
    with pytest.raises(AlreadyExists):
        storage.put_if_absent(parse_location(str(out / "maskprep.json")), b"{}")
    assert not (tmp_path / "nowhere").exists()


def test_local_write_into_a_missing_directory_names_it(tmp_path):
    with pytest.raises(NotFound, match=rf"^{tmp_path}/missing: no such directory$"):
        storage.write(parse_location(str(tmp_path / "missing" / "x.bin")))


# --- put-if-absent, compare-and-swap -------------------------------------------------------


def test_put_if_absent_refuses_a_second(root):
    _prepare(root)
    lock = root.join(".maskprep.lock")
    first = storage.put_if_absent(lock, b"owner-1")
    assert first.sha256 == hashlib.sha256(b"owner-1").hexdigest()
    if not root.is_local:
        assert first.etag == storage.stat(lock).etag
    with pytest.raises(AlreadyExists, match=r"\.maskprep\.lock: already exists$"):
        storage.put_if_absent(lock, b"owner-2")
    assert storage.read_bytes(lock) == b"owner-1"
    # Negative control: a plain put does replace it, so the read above would see a lost race.
    storage.put(lock, b"owner-3")
    assert storage.read_bytes(lock) == b"owner-3"


def test_put_if_absent_where_the_store_cannot_is_refused_up_front():
    location = parse_location("memory://maskprep-test/lock")
    with pytest.raises(Unsupported, match="cannot create an object only if it is absent"):
        storage.put_if_absent(location, b"x")
    assert not storage.exists(location)


def test_compare_and_swap_on_s3(s3_bucket):
    lock = parse_location(f"s3://{s3_bucket}/out/.maskprep.lock")
    created = storage.put_if_absent(lock, b"v1")
    data, info = storage.read_with_info(lock)
    assert (data, info.etag) == (b"v1", created.etag)
    swapped = storage.replace_if_match(lock, b"v2", created.etag)
    assert swapped.etag != created.etag
    with pytest.raises(VersionMismatch, match="changed since it was read"):
        storage.replace_if_match(lock, b"v3", created.etag)  # stale ETag
    assert storage.read_bytes(lock) == b"v2"
    storage.delete(lock)
    with pytest.raises(NotFound):
        storage.replace_if_match(lock, b"v4", swapped.etag)  # gone: not created by a swap
    assert not storage.exists(lock)


def test_compare_and_swap_on_local_files_compares_the_bytes(tmp_path):
    """A local file's version is the sha256 of its bytes, compared and replaced under a flock of
    its directory."""
    path = parse_location(str(tmp_path / "manifest"))
    storage.put(path, b"v1")
    data, info = storage.read_with_info(path)
    assert data == b"v1" and info.etag == hashlib.sha256(b"v1").hexdigest()
    storage.replace_if_match(path, b"v2", info.etag)
    assert storage.read_bytes(path) == b"v2"
    with pytest.raises(VersionMismatch, match="changed since it was read"):
        storage.replace_if_match(path, b"v3", info.etag)  # stale: v1 is gone
    assert storage.read_bytes(path) == b"v2"
    link = parse_location(str(tmp_path / "link"))
    os.symlink(path.path, link.path)
    with pytest.raises(StorageError):  # never through a link
        storage.replace_if_match(link, b"v3", hashlib.sha256(b"v2").hexdigest())
    assert storage.read_bytes(path) == b"v2"


# --- reads ---------------------------------------------------------------------------------


def test_ranged_and_streaming_reads_return_exactly_those_bytes(root):
    _prepare(root)
    data = os.urandom(3 * MB + 17)
    target = root.join("in.jsonl")
    storage.put(target, data)
    for start, end in [(0, 1), (5, 5), (MB - 3, MB + 3), (len(data) - 10, len(data) + 100)]:
        assert storage.read_range(target, start, end) == data[start:end]
    with storage.open_read(target, offset=2 * MB) as handle:
        assert handle.read(MB) == data[2 * MB : 3 * MB]
        handle.seek(7)
        assert handle.read(3) == data[7:10]
    assert storage.read_range(target, len(data) + 5, len(data) + 9) == b""


def test_object_replaced_mid_read_fails_instead_of_mixing_versions(s3_bucket):
    target = parse_location(f"s3://{s3_bucket}/in.jsonl", SMALL_PARTS)
    first = os.urandom(12 * MB)
    storage.put(target, first)
    with storage.open_read(target) as handle:
        assert handle.read(MB) == first[:MB]  # the first 5 MB block is fetched
        storage.put(target, os.urandom(12 * MB))
        handle.seek(10 * MB)
        with pytest.raises(OSError):
            handle.read(MB)  # the next block is fetched with If-Match: the old ETag
    # Negative control: a reader opened after the change reads the new version.
    with storage.open_read(target, offset=10 * MB) as handle:
        assert handle.read(MB) != first[10 * MB : 11 * MB]


def test_stat_reports_size_mtime_and_etag(root):
    _prepare(root)
    before = time.time() - 5
    storage.put(root.join("a"), b"12345")
    info = storage.stat(root.join("a"))
    assert (info.size, info.is_dir, info.name) == (5, False, "a")
    assert info.mtime is not None and before <= info.mtime <= time.time() + 5
    assert (info.etag is None) == root.is_local


def test_listing_hides_writer_temporaries(root):
    _prepare(root)
    storage.put(root.join("done.parquet"), b"d")
    pending = storage.write(root.join("pending.parquet"))
    pending.write(b"p" * 100)
    pending.flush()
    if root.is_local:
        # The temporary file exists on disk...
        assert any(storage.is_temporary(n) for n in raw_names(root))
    else:
        assert raw_names(root) == ["done.parquet"]  # S3: staged upload, no key at all
    # ...but no listing shows it.
    assert [i.name for i in storage.listdir(root)] == ["done.parquet"]
    assert [i.name for i in storage.walk(root)] == ["done.parquet"]
    assert [i.name for i in storage.glob(root.join("*"))] == ["done.parquet"]
    pending.abort()
    assert raw_names(root) == ["done.parquet"]


def test_negative_control_temporaries_are_recognised():
    assert storage.is_temporary(".tmp-data-00000.parquet.0123456789abcdef")
    assert not storage.is_temporary(".tmp-notes")  # a user's file is listed
    assert not storage.is_temporary("data-00000.parquet")


def test_walk_glob_listdir_on_nested_prefixes(root):
    _prepare(root)
    for name in ["b/2.jsonl", "a/1.jsonl", "a/sub/3.jsonl", "top.txt"]:
        if root.is_local:
            storage.create_directory(root.join(name).parent)
        storage.put(root.join(name), name.encode())
    assert [i.location.url for i in storage.walk(root)] == [
        root.join(n).url for n in ["a/1.jsonl", "a/sub/3.jsonl", "b/2.jsonl", "top.txt"]
    ]
    listed = storage.listdir(root)
    assert [(i.name, i.is_dir) for i in listed] == [("a", True), ("b", True), ("top.txt", False)]
    assert [i.location.url for i in storage.glob(root.join("**/*.jsonl"))] == [
        root.join(n).url for n in ["a/1.jsonl", "a/sub/3.jsonl", "b/2.jsonl"]
    ]


def test_missing_objects_give_one_line_naming_the_url(root):
    _prepare(root)
    missing = root.join("nope.jsonl")
    for call in (storage.stat, storage.read_bytes, storage.open_read, storage.listdir):
        with pytest.raises(NotFound) as caught:
            call(missing)
        assert str(caught.value) == f"{missing.url}: no such file, object or prefix"
    with pytest.raises(NotFound, match="no such"):
        list(storage.walk(missing))
    assert not storage.exists(missing)


def test_missing_bucket_is_named(s3_server):
    for call in (storage.stat, storage.read_bytes, storage.listdir):
        with pytest.raises(NotFound, match=r"^s3://no-such-bucket-x/k: no such bucket$"):
            call(parse_location("s3://no-such-bucket-x/k"))
    with pytest.raises(NotFound, match=r"^s3://no-such-bucket-x/k: no such bucket$"):
        storage.put(parse_location("s3://no-such-bucket-x/k"), b"1")
    writer = storage.write(parse_location("s3://no-such-bucket-x/k"))
    writer.write(b"1")
    with pytest.raises(NotFound, match="no such bucket"):
        writer.commit()


def test_access_denied_is_one_line(tmp_path, s3_server, monkeypatch):
    """A second server that checks credentials (moto's IAM mode) refuses our dummy keys."""
    from s3_server import S3Server

    with S3Server.start(tmp_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict:
        monkeypatch.setenv("AWS_ENDPOINT_URL", strict.endpoint)
        options = parse_option_items(["skip_instance_cache=true"])
        location = parse_location("s3://bucket/in.jsonl", options)
        for call in (storage.stat, storage.read_bytes, lambda loc: storage.put(loc, b"1")):
            with pytest.raises(AccessDenied) as caught:
                call(location)
            assert str(caught.value).startswith("s3://bucket/in.jsonl: access denied (")
            assert "\n" not in str(caught.value)


# --- delete, copy --------------------------------------------------------------------------


def test_delete_one_and_many_idempotent(root):
    _prepare(root)
    names = [f"data-{i:05d}.parquet" for i in range(5)]
    for name in names:
        storage.put(root.join(name), name.encode())
    storage.delete(root.join(names[0]))
    storage.delete(root.join(names[0]))  # already gone: fine
    storage.delete_many([root.join(n) for n in [*names[1:4], "never-there"]])
    assert raw_names(root) == [names[4]]


def test_copy_within_s3_is_server_side(s3_bucket):
    source = parse_location(f"s3://{s3_bucket}/part-0/data-00000.parquet")
    target = parse_location(f"s3://{s3_bucket}/merged/data-00000.parquet")
    data = os.urandom(MB)
    storage.put(source, data)
    result = storage.copy(source, target)
    assert (result.size, result.sha256) == (len(data), None)  # no bytes came through us
    assert storage.read_bytes(target) == data


def test_copy_across_stores_streams_and_hashes(s3_bucket, tmp_path):
    data = os.urandom(2 * MB)
    local = parse_location(str(tmp_path / "in.bin"))
    remote = parse_location(f"s3://{s3_bucket}/in.bin")
    storage.put(local, data)
    up = storage.copy(local, remote)
    down = storage.copy(remote, parse_location(str(tmp_path / "back.bin")))
    assert up.sha256 == down.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "back.bin").read_bytes() == data
    with pytest.raises(NotFound, match=r"missing\.bin: no such"):
        storage.copy(parse_location(f"s3://{s3_bucket}/missing.bin"), local)
    assert (tmp_path / "in.bin").read_bytes() == data


def test_generic_store_writes_through_a_hidden_temporary_key():
    root = parse_location("memory://maskprep-generic/out")
    target = root.join("x.bin")
    with pytest.raises(RuntimeError), storage.write(target) as sink:
        sink.write(b"partial")
        assert [i.name for i in storage.listdir(root)] == []  # the temporary key is hidden
        raise RuntimeError("boom")
    assert not storage.exists(target)
    assert filesystem(root).find(root.path) == []  # and removed
    with storage.write(target) as sink:
        sink.write(b"whole")
    assert storage.read_bytes(target) == b"whole"
    assert [p.rsplit("/", 1)[1] for p in filesystem(root).find(root.path)] == ["x.bin"]


# --- configuration the standard way --------------------------------------------------------


def test_s3_configured_by_a_profile_alone(s3_server, s3_bucket, tmp_path, monkeypatch):
    """AWS_PROFILE + a config file holding endpoint_url and keys, nothing else set."""
    (tmp_path / "config").write_text(
        f"[profile maskprep-test]\nendpoint_url = {s3_server.endpoint}\n"
        "aws_access_key_id = from-profile\naws_secret_access_key = from-profile\n"
    )
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "maskprep-test")
    options = parse_option_items(["skip_instance_cache=true"])
    location = parse_location(f"s3://{s3_bucket}/via-profile", options)
    storage.put(location, b"profile")
    assert storage.read_bytes(location) == b"profile"


def test_s3_configured_by_explicit_options(s3_server, s3_bucket, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    options = parse_option_items(
        [f"s3:endpoint_url={s3_server.endpoint}", "s3:skip_instance_cache=true"]
    )
    location = parse_location(f"s3://{s3_bucket}/via-options", options)
    storage.put(location, b"options")
    assert storage.read_bytes(location) == b"options"


# --- create-if-absent copies -------------------------------------------------------------


def test_a_create_only_server_side_copy_on_s3_never_replaces(s3_server, s3_bucket):
    source = parse_location(f"s3://{s3_bucket}/in/a")
    target = parse_location(f"s3://{s3_bucket}/out/a")
    storage.put(source, b"first")
    copied = storage.copy(source, target, exclusive=True)
    assert copied.sha256 is None  # server-side: no bytes through this process
    assert storage.read_bytes(target) == b"first"
    storage.put(source, b"second")
    with pytest.raises(AlreadyExists):
        storage.copy(source, target, exclusive=True)
    assert storage.read_bytes(target) == b"first"
    assert open_uploads(target.parent) == []  # the refused copy's upload was aborted
    storage.copy(source, target)  # negative control: a plain copy does replace
    assert storage.read_bytes(target) == b"second"


# --- the test server itself ----------------------------------------------------------------


def test_s3_server_dies_with_the_process_that_started_it():
    pytest.importorskip("moto")
    script = (
        "import sys, time, tempfile, pathlib; sys.path.insert(0, 'tests');"
        "from s3_server import S3Server;"
        "s = S3Server.start(pathlib.Path(tempfile.mkdtemp()));"
        "print(s.process.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE)
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    assert _alive(server_pid)
    os.kill(parent.pid, signal.SIGKILL)  # no chance to clean up
    parent.wait()
    deadline = time.monotonic() + 15
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(server_pid):
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the moto server outlived the process that started it")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped has already stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
