"""Reading an output back: what ``inspect``, ``verify``, the collator and ``LeakGuard`` read.

- :mod:`.shards`: a build output directory (its manifest lists the shards), a directory of
  another tool's shards, one Parquet or Arrow shard, or Arrow IPC on stdin → record batches; and
  what the rows are declared to be before they are read (the manifest's contract, else the one
  the shards carry in their metadata), with the conflicts between the two.
- :mod:`.reach`: how far rows reach into a model's positions, against what the model has.

List columns as flat NumPy arrays, and their per-row reductions: :mod:`maskprep.column_values`.
"""
