"""Reading: records from text and JSONL inputs, each with its ``file:line`` provenance.

- :mod:`.inputs`: paths, directories and globs expanded to files; compression by magic bytes;
  the hashing reader that sees every raw byte once.
- :mod:`.records`: :class:`~.records.Record`, :class:`~.records.Rejected`, per-input counts, and
  :class:`~.records.SourceReader`, which turns inputs into records.
- :mod:`.sft`: supervised records (prompt/completion, chat) parsed from JSON objects.
- :mod:`.fields`: dotted-path fields of a JSON object.
- :mod:`.parts`: the deterministic split of the inputs into N parts (array jobs, Ray).

The next stage, :mod:`maskprep.tokenizing`, turns records into token ids.
"""
