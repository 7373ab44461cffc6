"""Inspecting: shards checked against the column contract and summarised (``maskprep inspect``).

One pass over the rows, in three steps (:func:`~.driver.inspect`):

1. **The layout known before reading** (:class:`~.layout.LayoutHints`): the options, else the
   contract the manifest or the shards' own metadata declares (:mod:`maskprep.reading`), else
   nothing (another tool's shards).
2. **The column statistics**, batch by batch (:class:`~.stats.ColumnStats`): the contract columns
   as flat NumPy arrays, every rule a vectorised flag per position folded into a flag per row, and
   of the flagged rows only their number and the first few kept (:class:`~.checks.FlaggedRows`),
   so memory is bounded by the batch size, not by the rows.
3. **The verdicts**: what nothing declared is inferred from the statistics, in one place
   (:func:`~.layout.infer_layout`); then each check passes, fails, warns or is skipped
   (:mod:`.verdicts`, the manifest and model checks included), and the summary is drawn
   (:func:`~.results.data_stats`).

- :mod:`.options`, :mod:`.results`: what ``inspect`` is asked, and what it returns (the summary
  and the decoded rows included).
- :mod:`.checks`: every check, its stable name and what it asserts, the rows it flags, and
  :class:`~.checks.CheckResult`.
- :mod:`.driver`: :func:`~.driver.inspect`, the whole pass; :func:`~.driver.check_table` for one
  in-memory table.
"""
