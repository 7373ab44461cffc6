"""Encoding: records → token ids with a per-token ``trained`` mask (:class:`~.encoder.EncodedDoc`).

- :mod:`.loading`: loading a tokenizer (Hub name or local directory), its pad token, and the
  identity the manifest records; a local ``tokenizer.json`` read with ``tokenizers`` alone, where
  transformers would load it as it is (no transformers or torch import).
- :mod:`.encoder`: the special-token frame, the plain batch encoder and the fast path (the Rust
  tokenizer's batch API called directly, trusted only after it matched the plain encoder).
- :mod:`.sft`: supervised records (prompt/completion, chat templates) → ids and trained spans,
  through each token's span in the text (byte lengths or offsets).
- :mod:`.chat`: rendering chat records and finding the character spans to train.
- :mod:`.cache`: the tokenizer cache that lets a later build skip loading transformers.
- :mod:`.prepare`: what a build encodes with (from the files, the cache or transformers), and
  the encode step of a build, on one thread beside the main one, which rejects the supervised
  records left with nothing to train.

Reads :mod:`maskprep.sources` records; :mod:`maskprep.shaping` fits the encoded documents into rows.
"""
