"""Writing: rows → atomic shards and the manifest that marks an output finished, on a local
directory or an object-store prefix alike.

- :mod:`.commit`: the commit protocol, the whole of it in one place: no writer deletes or
  overwrites a file it cannot prove it created and that no committed manifest lists.
- :mod:`.directory`: what an output holds, whom each file belongs to, and who writes it.
- :mod:`.names`: the names of an output's files (plain, or tagged with an attempt id).
- :mod:`.shards`: the rolling shard writer and the rejects writer (atomic, hashed as they write).
- :mod:`.manifest`: the typed ``_maskprep.json``, created last; read back with validation by the
  dataclasses' type hints.
- :mod:`.finished`: a finished output's manifest assembled, checked still fresh before a resume
  returns it, and read back as a ``datasets.Dataset``.

Writes the rows :mod:`maskprep.shaping` made; :mod:`maskprep.pipeline` runs the stages in turn,
and :mod:`maskprep.resume` lets a resumed build start where the last complete shard ends.
"""
