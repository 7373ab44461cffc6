"""Inspecting: shards checked against the column contract and summarised (``maskprep inspect``).

Rows are read as flat NumPy arrays plus list offsets and every check is vectorised over whole
columns. The work is split in two so that any amount of data streams through in bounded memory:
:func:`~.analysis.analyse` keeps a few numbers per row of each batch, :func:`~.conclude.conclude`
joins them and settles what the whole data set must agree on.

- :mod:`.specs`: the checks, their stable names and what each asserts; :class:`~.specs.CheckResult`.
- :mod:`.kernels`: contract columns as flat arrays, and per-row reductions over them.
- :mod:`.analysis`: one batch → per-row numbers and per-row check flags.
- :mod:`.layout`: the strategy, widths, padding side and pad id the data is held to.
- :mod:`.summary`: what the rows hold (counts, lengths, histograms, buckets).
- :mod:`.conclude`: every batch's numbers → layout, statistics, one result per check;
  :func:`~.conclude.check_table` for one in-memory table.
- :mod:`.readers`: an output directory, a Parquet or Arrow file, or a stream on stdin → batches.
- :mod:`.manifest_facts`: what a build's manifest adds (shard hashes and counts, layout, totals).
- :mod:`.decode`: a row decoded into runs of trained, prompt and padding tokens.
- :mod:`.options`, :mod:`.results`: what ``inspect`` is asked, and what it returns.
- :mod:`.driver`: :func:`~.driver.inspect`, the whole pass.
"""
