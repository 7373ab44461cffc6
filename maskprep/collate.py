"""Rows → the keyword arguments a Hugging Face model takes, exactly as training feeds them.

``maskprep verify`` runs its probes on what this module emits, so what is verified is what is
trained. Shapes are ``(batch, seq_len)`` unless said otherwise.

Padded rows (strategies ``pad``, ``bucket``, ``none``) become ``input_ids``, a 2D
``attention_mask`` and ``labels``; rows of unequal length (``none``, or buckets of different sizes)
are padded to the longest row of the batch with ``pad_id`` on ``padding_side``, mask 0 and labels
``IGNORE_INDEX``. No ``position_ids`` are emitted for them unless asked: RoBERTa-family encoders
number positions from ``padding_idx + 1`` and 0-based ids would silently degrade them.

Packed rows come in one of three forms. A row holding documents ``a a a`` and ``b b`` and one pad::

    input_ids     [a0 a1 a2 b0 b1  P]
    position_ids  [ 0  1  2  0  1  0]
    labels        [-100 a1 a2 -100 b1 -100]    (first token of each document never trained)

``form="mask4d"``: ``attention_mask`` is a 4D block-diagonal causal mask ``(batch, 1, q, k)``
built from ``seq_lens``, plus ``position_ids`` and ``use_cache=False``. Allowed pairs (1) for the
row above, queries down, keys across; a pad attends only to itself so no softmax row is empty::

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
mode too), so without ``use_cache=False`` the documents of a row see each other.

``form="mask2d"``: the row's 2D 0/1 mask, ``position_ids`` and ``labels`` — what a naive trainer
feeds. It is here as a diagnostic: it lets every document attend to the ones before it.

Which form keeps documents apart (decoders, transformers 5.x; checked by ``maskprep verify``):

=====================  =========================  ==================================
attention              ``mask4d``                 ``position_ids`` (+ ``use_cache=False``)
=====================  =========================  ==================================
``eager``              yes                        yes (mask built from position_ids)
``sdpa``               yes                        yes (mask built from position_ids)
``flash_attention_2``  no (takes no 4D mask)      yes (variable-length kernel)
=====================  =========================  ==================================

``mask2d`` keeps documents apart under none of them. Encoders such as BERT build no mask from
``position_ids``: for packed encoder rows only ``mask4d`` with ``causal=False`` separates documents.
RoBERTa-family encoders number positions from ``padding_idx + 1``, so the 0-based
``position_ids`` of a pack shift their position embeddings (transformers#47496): add
``padding_idx + 1`` to ``position_ids`` before feeding them such a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import columns
from .columns import IGNORE_INDEX
from .errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa
    import torch

PackForm = Literal["position_ids", "mask4d", "mask2d"]
PACK_FORMS: tuple[str, ...] = ("position_ids", "mask4d", "mask2d")
PaddingSide = Literal["left", "right"]


@dataclass(frozen=True)
class RowArrays:
    """A batch of rows as padded NumPy matrices ``(batch, width)``.

    ``segments`` numbers the documents of each row (0, 1, …) at real positions and is -1 at
    padding; ``packed`` says whether the rows carried ``seq_lens``.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    position_ids: np.ndarray | None
    segments: np.ndarray
    packed: bool


def _columns_of(rows: Any) -> dict[str, list[np.ndarray]]:
    """Each needed column as a list of per-row 1D arrays, from dicts or an Arrow table/batch."""
    if hasattr(rows, "schema") and hasattr(rows, "column"):
        return _arrow_columns(rows)
    if not isinstance(rows, Sequence) or not rows:
        raise DataError("collate needs a non-empty list of rows or an Arrow table")
    names = [n for n in (*columns.REQUIRED_COLUMNS, *columns.PACK_COLUMNS) if n in rows[0]]
    out: dict[str, list[np.ndarray]] = {}
    for name in names:
        if name == columns.LENGTH:
            continue
        out[name] = [np.asarray(_field(row, name, i), dtype=np.int64) for i, row in enumerate(rows)]
    return out


def _field(row: Mapping[str, Any], name: str, index: int) -> Any:
    try:
        return row[name]
    except KeyError:
        raise DataError(f"row {index}: no column {name!r}") from None


def _arrow_columns(table: pa.Table | pa.RecordBatch) -> dict[str, list[np.ndarray]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, list[np.ndarray]] = {}
    for name in (*columns.REQUIRED_COLUMNS, *columns.PACK_COLUMNS):
        if name == columns.LENGTH or name not in table.schema.names:
            continue
        column = table.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        values = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        out[name] = np.split(values, np.cumsum(lengths)[:-1])
    if not out:
        raise DataError("collate needs a non-empty list of rows or an Arrow table")
    return out


def _pad(seqs: list[np.ndarray], width: int, fill: int, side: str) -> np.ndarray:
    """Scatter 1D sequences into a ``(len(seqs), width)`` matrix filled with ``fill``."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    out = np.full((len(seqs), width), fill, dtype=np.int64)
    if lengths.sum() == 0:
        return out
    rows = np.repeat(np.arange(len(seqs)), lengths)
    starts = np.cumsum(lengths) - lengths
    first = np.zeros(len(seqs), np.int64) if side == "right" else width - lengths
    cols = np.arange(lengths.sum()) - np.repeat(starts, lengths) + np.repeat(first, lengths)
    out[rows, cols] = np.concatenate(seqs)
    return out


def row_arrays(rows: Any, *, pad_id: int = 0, padding_side: PaddingSide = "right") -> RowArrays:
    """Pad a batch of rows (dicts or an Arrow table) to the longest row, and number documents.

    Rows already of one length (``pad``, ``pack``) come back unchanged; shorter rows are padded
    with ``pad_id`` on ``padding_side``, attention 0 and labels ``IGNORE_INDEX``.
    """
    if padding_side not in ("left", "right"):
        raise DataError(f"padding_side must be left or right, not {padding_side!r}")
    cols = _columns_of(rows)
    ids = cols[columns.INPUT_IDS]
    for name in (columns.ATTENTION_MASK, columns.LABELS):
        if name not in cols:
            raise DataError(f"rows have no {name!r} column")
        for i, (a, b) in enumerate(zip(ids, cols[name], strict=True)):
            if len(a) != len(b):
                raise DataError(f"row {i}: {name} has {len(b)} values, input_ids {len(a)}")
    width = max(len(s) for s in ids)
    mask = _pad(cols[columns.ATTENTION_MASK], width, 0, padding_side)
    packed = columns.SEQ_LENS in cols
    segments = np.where(mask > 0, 0, -1)
    if packed:
        segments = _pack_segments(mask, cols[columns.SEQ_LENS])
    positions = None
    if columns.POSITION_IDS in cols:
        positions = _pad(cols[columns.POSITION_IDS], width, 0, padding_side)
    labels = _pad(cols[columns.LABELS], width, IGNORE_INDEX, padding_side)
    if padding_side == "left":
        # A row padded here on the left has its first token predicted from a pad: not a target
        # (the same rule shaping applies to rows it pads on the left).
        lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
        grown = np.nonzero((lengths < width) & (lengths > 0))[0]
        labels[grown, width - lengths[grown]] = IGNORE_INDEX
    return RowArrays(
        input_ids=_pad(ids, width, pad_id, padding_side),
        attention_mask=mask,
        labels=labels,
        position_ids=positions,
        segments=segments,
        packed=packed,
    )


def _pack_segments(mask: np.ndarray, seq_lens: list[np.ndarray]) -> np.ndarray:
    """Document number at each real position (in order), -1 at padding."""
    segments = np.full(mask.shape, -1, dtype=np.int64)
    real_counts = mask.sum(axis=1)
    for i, lens in enumerate(seq_lens):
        if int(lens.sum()) != int(real_counts[i]):
            raise DataError(
                f"row {i}: seq_lens sum to {int(lens.sum())} but the row has "
                f"{int(real_counts[i])} real tokens"
            )
    real_rows, real_cols = np.nonzero(mask > 0)
    doc = np.concatenate([np.repeat(np.arange(len(lens)), lens) for lens in seq_lens])
    segments[real_rows, real_cols] = doc
    return segments


def positions_in_segments(segments: np.ndarray) -> np.ndarray:
    """0, 1, 2, … within each run of equal segment ids (0 at padding)."""
    width = segments.shape[1]
    index = np.broadcast_to(np.arange(width), segments.shape)
    starts = np.ones(segments.shape, dtype=bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    start_index = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    return np.where(segments >= 0, index - start_index, 0)


def block_mask(segments: np.ndarray, *, causal: bool = True) -> np.ndarray:
    """Boolean ``(batch, 1, q, k)``: query ``q`` may attend key ``k``.

    True where both positions hold the same document (and ``k <= q`` when ``causal``); a padding
    position attends only to itself, so no row of the softmax is empty.
    """
    same = segments[:, :, None] == segments[:, None, :]
    real = (segments >= 0)[:, :, None]
    allowed = same & real
    if causal:
        width = segments.shape[1]
        allowed &= np.tril(np.ones((width, width), dtype=bool))[None]
    allowed |= np.eye(segments.shape[1], dtype=bool)[None]
    return allowed[:, None]


def additive_mask(allowed: np.ndarray, dtype: Any) -> torch.Tensor:
    """An additive float mask (0 allowed, the dtype's most negative value blocked) from booleans."""
    import torch

    torch_dtype = _torch_dtype(dtype)
    blocked = torch.finfo(torch_dtype).min
    out = torch.zeros(allowed.shape, dtype=torch_dtype)
    out.masked_fill_(torch.from_numpy(~allowed), blocked)
    return out


def _torch_dtype(dtype: Any) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, str(dtype))


def collate(
    rows: Any,
    *,
    pad_id: int = 0,
    padding_side: PaddingSide = "right",
    form: PackForm = "position_ids",
    causal: bool = True,
    dtype: Any = "float32",
    pad_position_ids: bool = False,
) -> dict[str, Any]:
    """Turn a batch of rows into model keyword arguments (torch tensors).

    ``rows`` is a list of row dicts or a pyarrow Table/RecordBatch with the maskprep columns.
    Padded rows give ``input_ids``, ``attention_mask`` (2D) and ``labels``, plus ``position_ids``
    counting real tokens from 0 when ``pad_position_ids`` (for absolute-position models fed left
    padding). Packed rows (those with ``seq_lens``) give the ``form`` the module docstring draws:
    ``position_ids`` (no attention mask, ``use_cache=False``), ``mask4d`` (additive block-diagonal
    mask in ``dtype``; ``causal=False`` for encoders) or the leaky diagnostic ``mask2d``.
    """
    import torch

    if form not in PACK_FORMS:
        raise DataError(f"form must be one of {', '.join(PACK_FORMS)}, not {form!r}")
    arrays = row_arrays(rows, pad_id=pad_id, padding_side=padding_side)
    out: dict[str, Any] = {
        "input_ids": torch.from_numpy(arrays.input_ids),
        "labels": torch.from_numpy(arrays.labels),
    }
    if not arrays.packed:
        out["attention_mask"] = torch.from_numpy(arrays.attention_mask)
        if pad_position_ids:
            counted = np.cumsum(arrays.attention_mask, axis=1) - 1
            out["position_ids"] = torch.from_numpy(np.clip(counted, 0, None))
        return out
    positions = arrays.position_ids
    if positions is None:
        positions = positions_in_segments(arrays.segments)
    out["position_ids"] = torch.from_numpy(positions)
    out["use_cache"] = False
    if form == "mask4d":
        out["attention_mask"] = additive_mask(block_mask(arrays.segments, causal=causal), dtype)
    elif form == "mask2d":
        out["attention_mask"] = torch.from_numpy(arrays.attention_mask)
    return out


@dataclass(frozen=True)
class Collator:
    """:func:`collate` with its options bound, for ``DataLoader(collate_fn=Collator(...))``."""

    pad_id: int = 0
    padding_side: PaddingSide = "right"
    form: PackForm = "position_ids"
    causal: bool = True
    dtype: str = "float32"
    pad_position_ids: bool = False

    def __call__(self, rows: Any) -> dict[str, Any]:
        """Collate ``rows`` with this collator's options."""
        return collate(
            rows,
            pad_id=self.pad_id,
            padding_side=self.padding_side,
            form=self.form,
            causal=self.causal,
            dtype=self.dtype,
            pad_position_ids=self.pad_position_ids,
        )
