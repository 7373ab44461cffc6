"""``maskprep verify``: leak probes that run a real model on sampled rows and prove nothing leaks
through the masks; each probe's verdict is a :class:`~.results.ProbeResult`.

Rows are read as ``maskprep inspect`` reads them (an output directory, a directory of shards
without a manifest, a shard file, Arrow IPC on stdin): a seeded random sample plus the rows that
reach farthest into the model's positions. Before any forward pass every row of the data is held
to the model's position table (a row beyond an absolute table is an error; beyond a rotary
context, a warning) and the sample's token ids to its vocabulary. Rows then go through
:func:`maskprep.collate.collate` set up exactly as :func:`maskprep.collate.for_model` sets the
collator up for this model, so what is verified is what is trained; with ``collate=`` (``verify
--collate SPEC``) they go through the caller's collate function instead, whose batches are judged
against what the output says each row holds (:mod:`.feed`). Beside the probes, a data
check (``padding_attended``) finds runs of the pad id that the mask marks real. Each probe
compares the model's outputs (logits, or the last hidden state of a base encoder) between two
feeds that must agree if the masks are right:

1. ``pad_invariance``: every padded position's token replaced by a random id; outputs at real
   positions must not move.
2. ``unpadded_reference``: each row's real tokens (each document of a pack) run alone, unpadded,
   must give the outputs they get inside the batch (left padding fed without the
   ``position_ids`` an absolute-position model needs shows up here).
3. ``labels_loss``: the model's loss equals a cross-entropy over the trained positions only (real,
   label not ``IGNORE_INDEX``, and predicted from the same document); ``labels_gradient``: the loss
   has zero gradient with respect to the input embeddings at padded positions.
4. ``cross_document`` (packs): the tokens of each row's first document perturbed; outputs of the
   other documents must not move.
5. ``causal`` (decoders): the second half of each row's tokens perturbed; outputs before them must
   not move.

Every probe also runs a *planted leak* (negative control): the same comparison on a feed that
leaks by construction (attention mask dropped, an all-ones 2D mask on a pack, labels on every
ignored position, a bidirectional mask), batch after batch until the planted leak has been seen
once. If it never moves the outputs beyond the tolerance on this model, the probe cannot see a
leak and is reported ``inconclusive``, not ``pass``. Where the data cannot leak by construction (a
decoder's right padding comes after every real token and causal attention alone hides it) the
control does not apply and the note says so. Where the feed a plain collator gives would leak
(padded rows without ``position_ids``, a pack's ``position_ids`` form with the KV cache on), a note
says by how much. A ``LEAK`` names its fix (:mod:`.results`).

Tolerances (absolute + relative to the largest reference output of the row), chosen from the
transformers test suite's practice of comparing attention implementations: float32 (and
float64) ``1e-5 + 1e-5·max|ref|``; float16 ``5e-3 + 5e-3·max|ref|``; bfloat16 ``1e-2 +
2e-2·max|ref|``. Padded positions must have exactly no gradient (masked attention weights are
exactly 0), allowing ``1e-6`` (float32) or ``1e-4`` (half precision) of the largest
real-position gradient. A probe always compares like with like: same model, dtype and attention
implementation.

- :mod:`.options`: :class:`~.options.VerifyOptions` and the names it accepts.
- :mod:`.results`: the report: :class:`~.results.ProbeResult` and :class:`~.results.VerifyResult`,
  a probe's measurements (:class:`~.results.Tally`) turned into its verdict, the fix a ``LEAK``
  names.
- :mod:`.model`: the device, dtype and attention implementation; loading the model (its own code
  too); a caller's model left as it was.
- :mod:`.sampling`: rows sampled from the data, with its longest rows (or every row), and one pass
  over them before any forward pass (vocabulary, widths, reach against the model's positions, the
  ``padding_attended`` data check).
- :mod:`.probes`: what every probe needs (the model under test, a collated batch, tolerances) and
  the probes themselves.
- :mod:`.feed`: a caller's collate function (``verify --collate SPEC``): loading it, handing it
  rows as a trainer does, checking what it returns; :mod:`.fed_checks`: the output's truth laid
  out where a feed put each row's tokens, and its mask and labels held to that truth without a
  forward pass (shared with :class:`maskprep.training.LeakGuard`).
- :mod:`.driver`: :func:`~.driver.verify` and :func:`~.driver.verify_rows`.
"""
