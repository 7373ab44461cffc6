"""Writing: rows → atomic shards and the manifest that marks an output finished.

- :mod:`.names`: the names of an output directory's files.
- :mod:`.shards`: the rolling shard writer (atomic, hashed as it writes) and atomic file writes.
- :mod:`.manifest`: the typed ``_maskprep.json``, written last; read back with validation
  (:mod:`.decoding` reads JSON by the dataclasses' type hints).
- :mod:`.directory`: creating, emptying and refusing output directories; a finished build found
  on resume.
- :mod:`.lock`: one writer per output directory.
- :mod:`.rejects`: ``_rejects.jsonl``, the records rejected under the ``skip`` policy.
- :mod:`.dataset`: a finished output's shards, or the whole as a ``datasets.Dataset``.

Writes the rows :mod:`maskprep.shaping` made; :mod:`maskprep.pipeline` runs the stages in turn.
"""
