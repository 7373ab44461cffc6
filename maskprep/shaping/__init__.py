"""Shaping: encoded documents → rows, by fitting overlong documents, then padding, bucketing or
packing.

Four strategies share :func:`~.fit.fit` (the overflow policy) and differ in how pieces become
rows: ``pad`` (every row ``max_length``), ``bucket`` (each row the smallest bucket that holds
it), ``none`` (each row exactly its document, no padding), all three made by one
:class:`~.rows.PaddedShaper`, and ``pack`` (whole documents concatenated into rows of
``max_length``, :class:`~.rows.PackShaper`). Every shaper has the same two methods:
``shape(docs)`` yields the rows a batch of documents completes, ``finish()`` the rows held back;
:func:`~.rows.make_shaper` picks one for a strategy.

- :mod:`.fit`: the overflow policy and its counts (:class:`~.fit.ShapeStats`).
- :mod:`.rows`: :class:`~.rows.RowBatch` and the strategies that make pieces into rows (mask
  diagrams there), and the shaper for a strategy.
- :mod:`.fill`: how full rows are, per strategy and per bucket (:class:`~.fill.BucketFill`, the
  one count ``build``, ``inspect`` and ``merge`` share), and the tokens lost to ``overflow``.

Reads :mod:`maskprep.tokenizing` documents; :mod:`maskprep.output` writes the rows.
"""
