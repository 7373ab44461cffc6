"""Encoding: records → token ids with a per-token ``trained`` mask (:class:`~.encoder.EncodedDoc`).

- :mod:`.loading`: loading a tokenizer (Hub name or local directory), its pad token, and the
  identity the manifest records.
- :mod:`.encoder`: the special-token frame and the plain batch encoder.
- :mod:`.fast`: the fast path, the Rust tokenizer's batch API called directly, trusted only after
  it matched the plain encoder on probe texts.
- :mod:`.pool`: the fast path run beside the main thread, or in worker processes.
- :mod:`.sft`: supervised records (prompt/completion, chat templates) → ids and trained spans.
- :mod:`.cache`: the tokenizer cache that lets a later build skip loading transformers.
- :mod:`.prepare`: what a build encodes with, from the cache or through transformers.

Reads :mod:`maskprep.sources` records; :mod:`maskprep.shaping` fits the encoded documents into rows.
"""
