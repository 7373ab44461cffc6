"""Writing: rows → atomic shards and the manifest that marks an output finished, on a local
directory or an object-store prefix alike.

- :mod:`.commit`: the commit protocol, the whole of it in one place: no writer deletes or
  overwrites a file it cannot prove it created and that no committed manifest lists.
- :mod:`.directory`: what an output holds, and whom each file belongs to.
- :mod:`.names`: the names of an output's files (plain, or tagged with an attempt id).
- :mod:`.writers`: who writes an output (each writer's record; a courtesy, not a lock).
- :mod:`.parts_root`: the parts directory of a Ray build, the engine's own.
- :mod:`.shards`: the rolling shard writer (atomic, hashed as it writes).
- :mod:`.manifest`: the typed ``_maskprep.json``, created last; read back with validation
  (:mod:`.decoding` reads JSON by the dataclasses' type hints).
- :mod:`.freshness`: whether a finished output is still what a resumed build would make.
- :mod:`.rejects`: ``_rejects.jsonl``, the records rejected under the ``skip`` policy.
- :mod:`.dataset`: a finished output's shards, or the whole as a ``datasets.Dataset``.

Writes the rows :mod:`maskprep.shaping` made; :mod:`maskprep.pipeline` runs the stages in turn,
and :mod:`maskprep.resume` lets a resumed build start where the last complete shard ends.
"""
