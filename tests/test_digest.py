"""The one streaming sha256 (``maskprep.storage.operations``): equal to hashlib's over the bytes it
was asked for, across block boundaries, bounded by ``limit``, and given up on ``stop``."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest

from maskprep import storage
from maskprep.storage.operations import BLOCK, sha256_stream

DATA = bytes(range(256)) * ((2 * BLOCK) // 256 + 7)  # more than two blocks, not a multiple


@pytest.mark.parametrize("limit", [None, 0, 1, BLOCK, BLOCK + 1, len(DATA), len(DATA) + 5])
def test_the_digest_is_hashlibs_over_the_bytes_asked_for(limit):
    expected = hashlib.sha256(DATA if limit is None else DATA[:limit]).hexdigest()
    assert sha256_stream(io.BytesIO(DATA), limit) == expected


def test_it_starts_where_the_stream_stands_and_leaves_the_rest():
    handle = io.BytesIO(DATA)
    handle.seek(10)
    assert sha256_stream(handle, 100) == hashlib.sha256(DATA[10:110]).hexdigest()
    assert handle.tell() == 110


def test_a_stop_gives_up_and_no_stop_finishes():
    stop = threading.Event()
    assert sha256_stream(io.BytesIO(DATA), None, stop) == hashlib.sha256(DATA).hexdigest()
    stop.set()
    assert sha256_stream(io.BytesIO(DATA), None, stop) is None


def test_a_file_is_hashed_by_location(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    digest = storage.sha256_of(storage.parse_location(str(path)))
    assert digest == hashlib.sha256(DATA).hexdigest()
    path.write_bytes(DATA[:-1])  # negative control: one byte less is another digest
    assert storage.sha256_of(storage.parse_location(str(path))) != digest


def test_each_block_is_told_as_it_is_hashed():
    seen: list[bytes] = []
    digest = sha256_stream(io.BytesIO(DATA), BLOCK + 3, each=seen.append)
    assert [len(b) for b in seen] == [BLOCK, 3]
    assert b"".join(seen) == DATA[: BLOCK + 3]
    assert digest == hashlib.sha256(b"".join(seen)).hexdigest()
