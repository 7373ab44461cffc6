"""The encode step's last word on supervised records (``maskprep.tokenizing.prepare``): a record
that fitting would leave with no trained token is rejected there, before any shaping, and
counted apart (``without_labels``); one that keeps a trained token goes on as a document."""

from __future__ import annotations

import json

import numpy as np

from maskprep.config import ShapeConfig
from maskprep.sources.records import Record, Rejected
from maskprep.tokenizing.encoder import EncodedDoc
from maskprep.tokenizing.prepare import split_trainable

SHAPE = ShapeConfig(max_length=6, strategy="pad", overflow="truncate")


def _doc(trained: list[bool], prompt: int, line: int) -> EncodedDoc:
    ids = np.arange(10, 10 + len(trained), dtype=np.int32)
    return EncodedDoc(ids, np.array(trained), 1, 1, f"in.jsonl:{line}", prompt)


def _record(line: int) -> Record:
    return Record("", "in.jsonl", line, None)


def test_a_record_truncation_leaves_untrained_is_rejected_and_the_others_go_on():
    # 10 tokens: [head] 4 prompt, 4 completion [tail]. At 6 the prompt is cut from the left
    # first, so the completion's first tokens stay: trained.
    keeps = _doc([False] * 5 + [True] * 4 + [False], prompt=4, line=1)
    # Trained only in the prompt's first token, which truncation cuts: nothing left to train.
    loses = _doc([False, True] + [False] * 8, prompt=4, line=2)
    encoder_rejected = Rejected("in.jsonl", 3, "cannot render", "{}")
    records = [_record(1), _record(2), _record(3)]
    docs, rejected = split_trainable(records, [keeps, loses, encoder_rejected], SHAPE)
    assert docs == [keeps]
    assert [(r.line, r.without_labels) for r in rejected] == [(2, True), (3, False)]
    assert rejected[0].reason == "no trained token left after truncation to max_length 6"
    assert json.loads(rejected[0].raw) == {}


def test_negative_control_without_truncation_the_same_record_is_kept():
    loses = _doc([False, True] + [False] * 8, prompt=4, line=2)
    roomy = ShapeConfig(max_length=16, strategy="pad", overflow="truncate")
    docs, rejected = split_trainable([_record(2)], [loses], roomy)
    assert docs == [loses] and rejected == []
