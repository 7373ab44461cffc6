"""Rows → the keyword arguments a Hugging Face model takes, exactly as training feeds them.

``maskprep verify`` runs its probes on what this module emits, so what is verified is what is
trained. Shapes are ``(batch, seq_len)`` unless said otherwise. Train with a :class:`Collator`,
ideally ``Collator.for_output(DIR, model=model)``, which takes the pad id, padding side and strategy
from the output's manifest and the mask form from the model; :func:`collate` is the bare conversion
that the verify probes also feed deliberately faulty rows through.

Padded rows (strategies ``pad``, ``bucket``, ``none``) become ``input_ids``, a 2D
``attention_mask`` and ``labels``; rows of unequal length (``none``, or buckets of different sizes)
are padded to the longest row of the batch with the pad id on the padding side, mask 0 and labels
``IGNORE_INDEX``. The pad id is never guessed: it is given, or read from the padding the rows
already hold, or the batch is refused. ``position_ids`` (counted over real tokens) are emitted
for padded rows only when asked (``pad_position_ids``; ``for_output`` asks for absolute-position
models, where left padding would shift them): RoBERTa-family encoders number positions from
``padding_idx + 1``, and 0-based ids fed without that offset silently degrade them.

Packed rows are recognised by ``seq_lens`` or, when a trainer has dropped it
(``transformers.Trainer`` keeps only the columns ``model.forward`` names), by ``position_ids``: a
document starts wherever ``position_ids`` is 0 at a real token. Where both survive they must
agree. A row holding documents ``a a a`` and ``b b`` and one pad::

    input_ids     [a0 a1 a2 b0 b1  P]
    position_ids  [ 0  1  2  0  1  0]
    labels        [-100 a1 a2 -100 b1 -100]    (first token of each document never trained)

They come out in one of three forms.

``form="mask4d"``: ``attention_mask`` is a 4D block-diagonal causal mask ``(batch, 1, q, k)``,
plus ``position_ids`` and ``use_cache=False``. Allowed pairs (1) for the row above, queries down,
keys across; a pad attends only to itself so no softmax row is empty::

        a0 a1 a2 b0 b1 P
    a0 [ 1  0  0  0  0  0]
    a1 [ 1  1  0  0  0  0]
    a2 [ 1  1  1  0  0  0]
    b0 [ 0  0  0  1  0  0]
    b1 [ 0  0  0  1  1  0]
    P  [ 0  0  0  0  0  1]

The tensor is *additive* (0 where allowed, the dtype's most negative value elsewhere), in the
model's dtype: transformers 5.x hands a 4D mask to the attention function untouched, and eager
attention adds it to the scores, so a boolean mask there would silently add 1s and 0s. SDPA takes
the same additive mask. With ``causal=False`` (encoders) the blocks are full squares instead of
lower triangles.

``form="position_ids"``: ``input_ids``, ``labels``, ``position_ids`` and ``use_cache=False`` and
*no* ``attention_mask``. transformers 5.x derives the same block-diagonal mask from the restarts of
``position_ids`` only when no attention mask is given and there is no cache; Llama- and GPT-2-style
models build a cache whenever ``use_cache`` is on (``config.use_cache`` defaults to true, in train
mode too), so without ``use_cache=False`` the documents of a row see each other. transformers 4.x
derives it only under ``flash_attention_2``.

``form="mask2d"``: the row's 2D 0/1 mask, ``position_ids`` and ``labels`` — what a naive trainer
feeds. It is a diagnostic, emitted only when asked for by this name: it lets every document attend
to the ones before it.

Which form keeps a pack's documents apart is a fact of the model *and* of the installed
transformers, and it moves between releases; ``maskprep verify`` measures it on your model and
version. Measured on a CPU with tiny random Llama, GPT-2 and BERT models and the real MiniLM,
transformers 5.24 and 5.25 (flash attention, which needs a GPU, from its documentation):

======================  ===================  ============================================
model, attention        ``mask4d``           ``position_ids`` (+ ``use_cache=False``)
======================  ===================  ============================================
decoder, eager or sdpa  yes                  yes on 5.x (the mask is built from the restarts)
decoder, flash          no (no 4D mask)      yes (read as variable-length sequences)
encoder (BERT family)   yes                  from 5.25 on; before 5.25 the documents leak
======================  ===================  ============================================

The collator feeds the form that holds on every supported version: ``mask4d`` to encoders and
to decoders under eager or sdpa attention, ``position_ids`` under flash attention. It refuses
``position_ids`` for an encoder whatever the version (whether an encoder builds the block mask
from them depends on its ``forward`` and the release), and outside flash attention on a
transformers that builds no block mask from them. ``mask2d`` keeps documents apart under none.
RoBERTa-family encoders number positions from ``padding_idx + 1``: ``position_offset`` adds that
offset to every emitted position (``for_output`` reads it from the model).
"""

from ..config import PACK_FORMS, PackForm, PaddingSide
from .collator import Collator, additive_mask, block_mask, collate, for_model, for_output
from .models import ModelFacts, Task, model_facts, model_task
from .rows import COLLATE_COLUMNS, RowArrays, check_labels, positions_in_segments, row_arrays

__all__ = [
    "COLLATE_COLUMNS",
    "PACK_FORMS",
    "Collator",
    "ModelFacts",
    "PackForm",
    "PaddingSide",
    "RowArrays",
    "Task",
    "additive_mask",
    "block_mask",
    "check_labels",
    "collate",
    "for_model",
    "for_output",
    "model_facts",
    "model_task",
    "positions_in_segments",
    "row_arrays",
]
