"""Reading: records from text and JSONL inputs, each with its ``file:line`` provenance.

- :mod:`.inputs`: paths, directories and globs expanded to files, opened as streams (a range of
  them for a part); compression by magic bytes; the hashing reader that sees every raw byte
  once; lines capped in length, and the format sniffed from the first of them.
- :mod:`.records`: :class:`~.records.Record`, :class:`~.records.Rejected`, per-input counts,
  :class:`~.records.SourceReader`, which turns inputs into records, and their batches; the
  bad-record policy and the read side's counts (:class:`~.records.RejectPolicy`).
- :mod:`.sft`: fields of JSON objects, and supervised records (prompt/completion, chat).
- :mod:`.parts`: the deterministic split of the inputs into N parts (array jobs, Ray).

The next stage, :mod:`maskprep.tokenizing`, turns records into token ids.
"""
