"""Padded matrices → the tensors of each feed form: the 2D mask of padded rows, and for packs the
``position_ids`` form, the additive 4D block-diagonal ``mask4d`` and the leaky diagnostic
``mask2d``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..extras import require_extra

if TYPE_CHECKING:
    import torch

    from .rows import RowArrays


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

    resolved = torch_dtype(dtype)
    blocked = torch.finfo(resolved).min
    out = torch.zeros(allowed.shape, dtype=resolved)
    out.masked_fill_(torch.from_numpy(~allowed), blocked)
    return out


def torch_dtype(dtype: Any) -> torch.dtype:
    """``dtype`` (a torch dtype or its name, ``"bfloat16"``) as a floating-point torch dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, not {dtype!r}")
    return found


def _with_offset(positions: np.ndarray, real: np.ndarray, offset: int) -> np.ndarray:
    """Positions for a model that numbers them from ``offset``: real ones shifted, padding at
    ``offset - 1`` (RoBERTa's ``padding_idx``, whose embedding is never trained)."""
    if offset == 0:
        return positions
    return np.where(real, positions + offset, offset - 1)


def emit(
    arrays: RowArrays,
    *,
    form: str,
    causal: bool,
    dtype: Any,
    pad_position_ids: bool,
    position_offset: int,
) -> dict[str, Any]:
    """The model keyword arguments (torch tensors) for ``arrays`` in ``form``.

    Padded rows: ``input_ids``, 2D ``attention_mask``, ``labels`` (+ ``position_ids`` counted over
    real tokens when ``pad_position_ids``). Packed rows: ``input_ids``, ``labels``,
    ``position_ids``, ``use_cache=False`` and the ``attention_mask`` of ``form`` (none for
    ``position_ids``). Emitted positions start at ``position_offset``.
    """
    require_extra("torch", "train", "collate")
    import torch

    offset = position_offset
    real = arrays.attention_mask > 0
    out: dict[str, Any] = {
        "input_ids": torch.from_numpy(arrays.input_ids),
        "labels": torch.from_numpy(arrays.labels),
    }
    if not arrays.packed:
        out["attention_mask"] = torch.from_numpy(arrays.attention_mask)
        if pad_position_ids:
            counted = np.clip(np.cumsum(arrays.attention_mask, axis=1) - 1, 0, None)
            out["position_ids"] = torch.from_numpy(_with_offset(counted, real, offset))
        return out
    assert arrays.position_ids is not None
    out["position_ids"] = torch.from_numpy(_with_offset(arrays.position_ids, real, offset))
    out["use_cache"] = False
    if form == "mask4d":
        out["attention_mask"] = additive_mask(block_mask(arrays.segments, causal=causal), dtype)
    elif form == "mask2d":
        out["attention_mask"] = torch.from_numpy(arrays.attention_mask)
    return out
