"""Reading inputs (#14): the line cap, the format-sniffing rule, zstd frames, directory walking.
The black-box attacks are in tests/hardening/test_inputs.py; these pin the rules themselves."""

from __future__ import annotations

import errno
import io
import json
import os

import pytest
import zstandard
from conftest import make_config, write_jsonl

import maskprep
from maskprep.config import DEFAULT_MAX_RECORD_BYTES
from maskprep.errors import ConfigError, DataError
from maskprep.output.names import REJECTS_NAME
from maskprep.sources.inputs import (
    OVERLONG_HEAD,
    Overlong,
    capped_lines,
    decompressed,
    expand_inputs,
    sample,
    sniff_format,
)

# ----------------------------------------------------------------------------- the line cap


def _lines(data: bytes, limit: int) -> list[bytes | Overlong]:
    return list(capped_lines(io.BufferedReader(io.BytesIO(data)), limit))


def test_a_line_of_exactly_the_cap_is_read_and_one_byte_more_is_not():
    limit = 10
    read = _lines(b"x" * 10 + b"\n" + b"y" * 11 + b"\n" + b"z" * 10, limit)
    assert read[0] == b"x" * 10 + b"\n"
    assert isinstance(read[1], Overlong) and read[1].head == b"y" * 11
    assert read[2] == b"z" * 10  # the last line, without a newline, at the cap
    assert len(read) == 3  # the rest of the long line was skipped, not read as lines


def test_the_rest_of_an_overlong_line_is_skipped_however_long():
    head = b"a" * (3 << 20)  # three skip chunks past the cap
    read = _lines(head + b"\nnext\n", 100)
    assert [type(x) for x in read] == [Overlong, bytes]
    assert read[1] == b"next\n"
    assert read[0].head == b"a" * 101  # the cap and one byte: enough to tell it is over


def test_the_default_cap_is_generous_and_applies(tmp_path, llama_like):
    """A line one byte past the default cap (64 MiB) is a bad record, counted and skipped; the
    reject keeps the line's first bytes only."""
    assert DEFAULT_MAX_RECORD_BYTES == 64 << 20
    path = tmp_path / "huge.txt"
    with open(path, "wb") as handle:
        handle.write(b"short first line\n")
        handle.write(b"x" * (DEFAULT_MAX_RECORD_BYTES + 1) + b"\n")
        handle.write(b"short last line\n")
    config = make_config([path], llama_like, tmp_path / "out", pad_token="eos")
    with pytest.raises(
        DataError, match=rf"{path}:2: line longer than the record limit of 67,108,864"
    ):
        maskprep.build(config)
    out = tmp_path / "skip"
    skip = make_config([path], llama_like, out, pad_token="eos", on_bad_record="skip")
    totals = maskprep.build(skip).manifest.as_dict()["totals"]
    assert (totals["records_read"], totals["records_rejected"]) == (3, 1)
    (reject,) = [json.loads(x) for x in (out / REJECTS_NAME).read_text().splitlines()]
    assert reject["line"] == 2 and len(reject["raw"]) == OVERLONG_HEAD + 1  # and "…"


def test_the_cap_is_not_in_the_manifest(tmp_path, llama_like):
    """A guard that changes no build within it: outputs with and without it compare equal."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "a few words"}])
    config = make_config([path], llama_like, tmp_path / "out", pad_token="eos")
    source = maskprep.build(config).manifest.as_dict()["config"]["source"]
    assert "max_record_bytes" not in source and "max_rejects" not in source


# ----------------------------------------------------------------------------- format sniffing

OBJ = b'{"text": "a"}\n'


@pytest.mark.parametrize(
    "lines, expected",
    [
        ([OBJ, b"plain text\n"], "jsonl"),  # the first line decides when it is an object
        ([b"not json\n", OBJ, OBJ, OBJ], "jsonl"),  # a bad first record does not make it text
        ([b"not json\n", OBJ], "jsonl"),  # half is enough
        ([b"plain\n", OBJ, b"plain\n", b"plain\n"], "text"),  # one JSON line in a text file
        ([b"\n", b"   \n", b"plain\n"], "text"),  # blank lines do not count
        ([b"\xef\xbb\xbf" + OBJ], "jsonl"),  # a byte-order mark
        ([b"  [1, 2]\n", b"[3]\n"], "text"),  # arrays are not records
        ([], "text"),
    ],
)
def test_sniffing_rule(lines, expected):
    assert sniff_format(sample(iter(lines))) == expected


def test_sniffing_does_not_wait_past_a_first_object():
    """A pipe whose first line is an object is not held up for more lines."""

    def stream():
        yield b"\n"
        yield OBJ
        raise AssertionError("read past the line that decides the format")

    assert sniff_format(sample(stream())) == "jsonl"


def test_sniffing_stops_at_an_overlong_line():
    def stream():
        yield b"plain\n"
        yield Overlong(b"{")
        raise AssertionError("read past an over-long line")

    assert len(sample(stream())) == 2


def test_an_extensionless_text_file_with_a_json_line_stays_text(tmp_path, llama_like):
    path = tmp_path / "notes"
    path.write_text("first note\n" + json.dumps({"text": "quoted"}) + "\nthird note\n")
    config = make_config([path], llama_like, tmp_path / "out", pad_token="eos")
    manifest = maskprep.build(config).manifest.as_dict()
    assert manifest["inputs"][0]["format"] == "text"
    assert manifest["totals"]["records_read"] == 3


def test_every_part_of_an_extensionless_file_sniffs_as_the_whole_file(tmp_path, llama_like):
    """Part 1 starts mid-file and part 0 holds only its first lines; both sniff the file's start,
    where a bad first line must not turn JSONL into text."""
    path = tmp_path / "records"
    records = ["not json"] + [json.dumps({"text": f"document {i}"}) for i in range(40)]
    path.write_text("\n".join(records) + "\n")
    formats = []
    for index in range(2):
        config = make_config(
            [path],
            llama_like,
            tmp_path / f"part{index}",
            pad_token="eos",
            on_bad_record="skip",
            part=maskprep.config.PartSpec(index=index, count=2),
        )
        formats.append(maskprep.build(config).manifest.as_dict()["inputs"][0]["format"])
    assert formats == ["jsonl", "jsonl"]


# ----------------------------------------------------------------------------- compressed input


def test_zstd_frames_read_whole_or_fail_when_cut():
    frames = [zstandard.ZstdCompressor().compress(b"line %d\n" % i * 500) for i in range(4)]
    whole = b"".join(frames)
    reader = decompressed(io.BufferedReader(io.BytesIO(whole)))
    assert reader.read() == b"".join(b"line %d\n" % i * 500 for i in range(4))
    # Cut at a frame boundary: a shorter but whole stream (as zstd -d reads it).
    reader = decompressed(io.BufferedReader(io.BytesIO(b"".join(frames[:2]))))
    assert reader.read().count(b"\n") == 1000
    with pytest.raises(EOFError, match="inside a zstd frame"):
        decompressed(io.BufferedReader(io.BytesIO(whole[:-3]))).read()


def test_a_truncated_stream_fails_even_when_bad_records_are_skipped(tmp_path, llama_like):
    """A cut stream is not one bad record: what follows the cut is lost, so it always fails."""
    data = "".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(200))
    path = tmp_path / "in.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(data.encode())[:-5])
    config = make_config(
        [path], llama_like, tmp_path / "out", pad_token="eos", on_bad_record="skip"
    )
    with pytest.raises(DataError, match=f"{path}:.*cannot read input"):
        maskprep.build(config)


# ----------------------------------------------------------------------------- directories


def test_two_links_to_one_directory_read_it_once_in_a_fixed_order(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.txt").write_text("a\n")
    (root / "z-link").symlink_to(root / "real", target_is_directory=True)
    (root / "b-link").symlink_to(root / "real", target_is_directory=True)
    # The first of the sorted names that reach the directory is the one kept.
    assert expand_inputs([str(root)]) == [str(root / "b-link" / "a.txt")]


def test_an_unreadable_directory_is_an_error(tmp_path, monkeypatch):
    """What tests/hardening cannot show as root (root reads every directory): a directory that
    cannot be listed is named, not skipped."""
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "c.txt").write_text("c\n")
    listing = os.scandir

    def scandir(path="."):
        if str(path).endswith("hidden"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ConfigError, match="hidden: cannot read directory: Permission denied"):
        expand_inputs([str(tmp_path)])


def test_a_dangling_link_given_as_an_input_is_named(tmp_path):
    (tmp_path / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    with pytest.raises(ConfigError, match=r"gone\.jsonl: dangling symbolic link"):
        expand_inputs([str(tmp_path / "gone.jsonl")])


# ----------------------------------------------------------------------------- hostile records


def test_lone_surrogate_in_a_chat_message_is_a_bad_record(tmp_path, llama_like):
    template = tmp_path / "t.jinja"
    template.write_text(
        "{% for m in messages %}{{ m['role'] }}: "
        "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}{% endgeneration %}"
        "{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}"
    )
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    # As json.dumps writes an escaped lone surrogate (ensure_ascii): "\udfff" in the line.
    bad = json.dumps(
        {"messages": [*good["messages"][:1], {"role": "assistant", "content": "\udfff"}]}
    )
    path = write_jsonl(tmp_path / "chat.jsonl", [good, bad])
    config = make_config(
        [path],
        llama_like,
        tmp_path / "out",
        pad_token="eos",
        on_bad_record="skip",
        sft=maskprep.SFTConfig(messages_field="messages", chat_template=str(template)),
    )
    out = maskprep.build(config).output
    (reject,) = [json.loads(x) for x in (out / REJECTS_NAME).read_text().splitlines()]
    assert reject["line"] == 2
    assert "messages[1].content" in reject["reason"] and "lone surrogate" in reject["reason"]


# ----------------------------------------------------------------------------- standard input


def test_a_closed_standard_input_is_refused_before_reading(monkeypatch):
    from maskprep.config import SourceConfig
    from maskprep.sources.records import SourceReader

    monkeypatch.setattr("sys.stdin", None)  # what Python sets after `<&-`
    with pytest.raises(ConfigError, match=r"standard input is closed; '-' reads the input from it"):
        SourceReader(SourceConfig(inputs=("-",)))
    # Negative control: the same reader given a stream reads it.
    reader = SourceReader(
        SourceConfig(inputs=("-",), input_format="text"), stdin=io.BytesIO(b"a\n")
    )
    assert [r.text for r in reader] == ["a"]


def test_the_process_standard_input_is_read_for_dash(monkeypatch):
    from maskprep.config import SourceConfig
    from maskprep.sources.records import SourceReader

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"one\n\ntwo\n")))
    reader = SourceReader(SourceConfig(inputs=("-",), input_format="text"))
    assert [(r.text, r.line) for r in reader] == [("one", 1), ("two", 3)]
    assert reader.stats[0].blank_lines == 1
