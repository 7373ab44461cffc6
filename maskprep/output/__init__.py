"""Writing: rows → atomic shards and the manifest that marks an output finished, on a local
directory or an object-store prefix alike.

- :mod:`.names`: the names of an output's files.
- :mod:`.session`: the commit protocol, from taking the lock to creating the manifest.
- :mod:`.directory`: the one place that decides whether and how an output may be written: what
  it holds and whom it belongs to.
- :mod:`.lock`: one writer per output (a flock locally, a lease on an object store).
- :mod:`.shards`: the rolling shard writer (atomic, hashed as it writes).
- :mod:`.manifest`: the typed ``_maskprep.json``, created last; read back with validation
  (:mod:`.decoding` reads JSON by the dataclasses' type hints).
- :mod:`.freshness`: whether a finished output is still what a resumed build would make.
- :mod:`.rejects`: ``_rejects.jsonl``, the records rejected under the ``skip`` policy.
- :mod:`.dataset`: a finished output's shards, or the whole as a ``datasets.Dataset``.

Writes the rows :mod:`maskprep.shaping` made; :mod:`maskprep.pipeline` runs the stages in turn.
"""
