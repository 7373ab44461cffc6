"""Writing: rows → atomic shards and the manifest that marks an output finished.

- :mod:`.names`: the names of an output directory's files.
- :mod:`.shards`: the rolling shard writer (atomic, hashed as it writes) and atomic file writes.
- :mod:`.manifest`: ``maskprep.json``, written last; reading it back.
- :mod:`.directory`: creating, emptying and refusing output directories; a finished build found
  on resume.
- :mod:`.lock`: one writer per output directory.
- :mod:`.rejects`: ``rejects.jsonl``, the records rejected under the ``skip`` policy.
- :mod:`.dataset`: a finished output's shards, or the whole as a ``datasets.Dataset``.

Writes the rows :mod:`maskprep.shaping` made; :mod:`maskprep.pipeline` runs the stages in turn.
"""
