"""The training hand-off: :class:`Collator` (options bound; the label contract and the model's
limits checked on every batch), :func:`for_output` (options read from an output's manifest and
from the model), and :func:`collate`, the bare conversion the verify probes also feed
deliberately faulty rows through; and the tensors of each feed form (:func:`emit`): the 2D mask
of padded rows, and for packs the ``position_ids`` form, the additive 4D block-diagonal
``mask4d`` and the leaky diagnostic ``mask2d``."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..column_values import outside_ids
from ..config import PACK_FORMS, PADDING_SIDES, PackForm, PaddingSide
from ..errors import ConfigError, DataError
from ..extras import require_extra
from ..token_ids import MAX_TOKEN_ID, token_id_problem
from .models import ModelFacts, model_facts
from .rows import RowArrays, check_labels, first_true, row_arrays

if TYPE_CHECKING:
    import torch

    from ..contract import ShardContract

#: Why an encoder's packs are fed ``mask4d``: it holds on every transformers version, where
#: ``position_ids`` alone keep documents apart only on some encoders and releases.
_ENCODER_PACKS = (
    "need form='mask4d': it keeps documents apart on every transformers version, where "
    "position_ids alone do only for some encoders and releases (BERT-family models from "
    "transformers 5.25 on), which verify measures on yours when asked to probe that form"
)


def collate(
    rows: Any,
    *,
    pad_id: int | None = None,
    padding_side: PaddingSide | None = None,
    form: PackForm = "position_ids",
    causal: bool = True,
    dtype: Any = "float32",
    pad_position_ids: bool = False,
    packed: bool | None = None,
    position_offset: int = 0,
) -> dict[str, Any]:
    """Turn a batch of rows into model keyword arguments (torch tensors), judging no labels.

    ``rows`` is a list of row dicts, a dict of columns or a pyarrow Table/RecordBatch with the
    maskprep columns. Padded rows give ``input_ids``, ``attention_mask`` (2D) and ``labels``, plus
    ``position_ids`` counting real tokens when ``pad_position_ids`` (absolute-position models fed
    left padding). Packed rows (``seq_lens`` or ``position_ids``) give the ``form`` the package
    docstring draws: ``position_ids`` (no attention mask, ``use_cache=False``), ``mask4d`` (additive
    block-diagonal mask in ``dtype``; ``causal=False`` for encoders) or the leaky diagnostic
    ``mask2d``. ``pad_id``, ``padding_side`` and ``packed`` are as :func:`row_arrays` takes them;
    emitted positions start at ``position_offset``. Train with :class:`Collator`, which also
    refuses labels that break the contract and feeds the model cannot take.
    """
    if form not in PACK_FORMS:
        raise ValueError(f"form must be one of {', '.join(PACK_FORMS)}, not {form!r}")
    arrays = row_arrays(rows, pad_id=pad_id, padding_side=padding_side, packed=packed)
    return emit(
        arrays,
        form=form,
        causal=causal,
        dtype=dtype,
        pad_position_ids=pad_position_ids,
        position_offset=position_offset,
    )


@dataclass(frozen=True)
class Collator:
    """Rows → model keyword arguments, for ``DataLoader(collate_fn=...)`` and
    ``Trainer(data_collator=...)``; build it with :meth:`for_output` to take every option from
    the output and the model.

    ``pad_id`` and ``padding_side`` default to what the rows' own padding shows; a batch that must
    be padded while none shows is refused rather than padded with a guess. ``packed``: ``True``
    refuses packed rows that lost ``seq_lens`` and ``position_ids`` (a trainer dropped them),
    ``None`` recognises packs by those columns. ``form`` is the feed for packs (see the package
    docstring); ``causal=False`` (encoders) needs ``mask4d``. ``dtype`` is the model's, for the 4D
    mask.
    ``pad_position_ids`` feeds padded rows ``position_ids`` (absolute-position models).
    ``position_offset``, ``max_positions`` and ``vocab_size`` describe the model (see
    :class:`~maskprep.collate.ModelFacts`): rows beyond its position table or vocabulary are
    refused before they reach it. ``check_labels`` refuses labels that break the column contract
    (on padding, shifted, trained across a document boundary).
    """

    pad_id: int | None = None
    padding_side: PaddingSide | None = None
    form: PackForm = "position_ids"
    causal: bool = True
    dtype: str = "float32"
    pad_position_ids: bool = False
    packed: bool | None = None
    position_offset: int = 0
    max_positions: int | None = None
    vocab_size: int | None = None
    check_labels: bool = True

    def __post_init__(self) -> None:
        # Options come from the caller's code (the data's own come through for_output, checked
        # as data there): a wrong one is a programming error, raised as Python raises those.
        if self.form not in PACK_FORMS:
            raise ValueError(f"form must be one of {', '.join(PACK_FORMS)}, not {self.form!r}")
        if self.padding_side not in (None, *PADDING_SIDES):
            raise ValueError(f"padding_side must be left or right, not {self.padding_side!r}")
        object.__setattr__(self, "dtype", str(torch_dtype(self.dtype)).removeprefix("torch."))
        problem = None if self.pad_id is None else token_id_problem(self.pad_id)
        if problem is not None:
            kind = ValueError if isinstance(self.pad_id, int) else TypeError
            raise kind(f"pad_id: {problem}")
        for name in ("causal", "pad_position_ids", "check_labels", "packed"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "packed" and value is None):
                raise TypeError(f"{name} must be True or False, not {value!r}")
        for name in ("position_offset", "max_positions", "vocab_size"):
            value = getattr(self, name)
            if value is None and name != "position_offset":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if not 0 <= self.position_offset <= MAX_TOKEN_ID:
            raise ValueError(
                f"position_offset must be 0 to {MAX_TOKEN_ID}, not {self.position_offset}"
            )
        for name in ("max_positions", "vocab_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")

    @classmethod
    def for_output(
        cls, path: str | os.PathLike[str], model: Any = None, **options: Any
    ) -> Collator:
        """A :class:`Collator` for the maskprep output at ``path`` and the model it will feed.

        From the manifest: the pad id, the padding side, and whether the rows are packs (packed rows
        that then arrive without ``seq_lens`` and ``position_ids`` are refused). ``path`` may also
        be one shard, or a directory of shards, without the manifest: the same facts then come from
        the contract each maskprep shard carries in its metadata (a shard whose metadata contradicts
        the manifest is refused, :class:`~maskprep.errors.DataError`); a shard another tool wrote,
        which carries none, gets what the rows' own padding shows, as :meth:`for_model` does. From
        ``model``: what :meth:`for_model` reads. Any :class:`Collator` field in ``options`` wins
        over what was read, but combinations that leak are refused. A packed output needs ``model``
        (or ``causal=``): its blocks are causal for a decoder and full for an encoder, and a guess
        is refused (``ValueError``) rather than taken.
        """
        _refuse_unknown(options)
        settings = _settings(_read_contract(path))
        tokenizer_vocab = settings.pop("tokenizer_vocab")
        facts = _facts(model)
        if facts is not None:
            _check_vocabulary(path, tokenizer_vocab, facts)
        return _collator(facts, settings, options, str(path))

    @classmethod
    def for_model(cls, model: Any = None, **options: Any) -> Collator:
        """A :class:`Collator` for rows without a manifest (or whose facts you hold), set up for
        ``model``: a model object, its config, a Hub name / local directory whose config is read, or
        :class:`~maskprep.collate.ModelFacts` already read.

        From the model: causal or encoder, the mask dtype, the attention implementation, a
        RoBERTa-style position offset, the position and vocabulary limits (absolute-position models
        also get ``pad_position_ids``). Packs are fed ``mask4d`` (non-causal blocks) to encoders; to
        decoders ``position_ids`` under flash attention, which takes no 4D mask, else ``mask4d``,
        which keeps documents apart in every transformers version and for every attention that takes
        a mask. ``options`` are :class:`Collator` fields (``pad_id``, ``padding_side``, ``packed``,
        ``form``, …) and win over what was read, but combinations that leak are refused. Without
        ``model`` (or ``causal``), rows known to be packs (``packed=True``) are refused
        (``ValueError``): an encoder's blocks are not causal. Rows not known to be packs
        (``packed=None``) are fed as a decoder's, with a warning; padded rows (``packed=False``)
        need no model.
        """
        _refuse_unknown(options)
        settings = {name: options.pop(name, None) for name in ("pad_id", "padding_side", "packed")}
        return _collator(_facts(model), settings, options, "the rows")

    def __call__(self, rows: Any) -> dict[str, Any]:
        """Collate ``rows`` (a list of row dicts, a dict of columns or an Arrow table)."""
        arrays = row_arrays(
            rows, pad_id=self.pad_id, padding_side=self.padding_side, packed=self.packed
        )
        if arrays.packed and not self.causal and self.form == "position_ids":
            raise ConfigError(f"packed rows for an encoder (causal=False) {_ENCODER_PACKS}")
        if self.check_labels:
            check_labels(arrays, causal=self.causal)
        out = emit(
            arrays,
            form=self.form,
            causal=self.causal,
            dtype=self.dtype,
            pad_position_ids=self.pad_position_ids,
            position_offset=self.position_offset,
        )
        self._check_model_limits(arrays, out)
        return out

    def _check_model_limits(self, arrays: RowArrays, out: dict[str, Any]) -> None:
        """Refuse ids and positions the model has no embedding for: on a GPU they end in a
        device-side assert, far from the row that caused it."""
        ids = arrays.input_ids
        if self.vocab_size is not None and outside_ids(ids, self.vocab_size).any():
            row, col = first_true(outside_ids(ids, self.vocab_size))
            raise DataError(
                f"row {row}: token id {ids[row, col]} is outside the model's "
                f"{self.vocab_size}-id vocabulary; were the rows built with its tokenizer?"
            )
        if self.max_positions is None:
            return
        if "position_ids" in out:
            used = out["position_ids"].numpy().max(axis=1)
        else:
            # The model numbers the positions itself, up to the row's width.
            used = np.full(len(ids), ids.shape[1] - 1 + self.position_offset)
        if (used >= self.max_positions).any():
            row = int(np.argmax(used >= self.max_positions))
            raise DataError(
                f"row {row} needs position {used[row]}, but the model has {self.max_positions} "
                "position embeddings: build the output with a max length the model takes"
            )


#: The same as :meth:`Collator.for_output` and :meth:`Collator.for_model`.
for_output = Collator.for_output
for_model = Collator.for_model


def _refuse_unknown(options: dict[str, Any]) -> None:
    known = {f.name for f in fields(Collator)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown collator option(s): {', '.join(unknown)}")


def _facts(model: Any) -> ModelFacts | None:
    if model is None or isinstance(model, ModelFacts):
        return model
    return model_facts(model)


def _collator(
    facts: ModelFacts | None, settings: dict[str, Any], options: dict[str, Any], where: str
) -> Collator:
    """The collator for ``facts`` and the data's ``settings`` (pad id, padding side, packed),
    ``options`` overriding both."""
    settings = dict(settings)
    options = dict(options)
    if facts is not None:
        settings.update(
            dtype=facts.dtype,
            position_offset=facts.position_offset,
            max_positions=facts.max_positions,
            vocab_size=facts.vocab_size,
            pad_position_ids=facts.absolute_positions,
        )
    causal = options.pop("causal", facts.causal if facts is not None else None)
    packed = options.get("packed", settings.get("packed"))
    if causal is None:
        if packed:
            # A guess here is what leaked: causal blocks fed to an encoder cut each document's
            # tokens off from the ones after them, and nothing downstream can tell.
            raise ValueError(
                f"{where} holds packed rows, whose documents need a mask built for the model "
                "(causal blocks for a decoder, full blocks for an encoder), and the model is not "
                "known: give model= (the model, its config or its name), or causal=True for a "
                "decoder, causal=False for an encoder"
            )
        if packed is None:
            warnings.warn(
                f"{where}: the model is not known, so packed rows are fed to a decoder (causal "
                "blocks); for an encoder give model= (the model, its config or its name) or "
                "causal=False",
                UserWarning,
                stacklevel=3,
            )
        causal = True
    form = options.pop("form", None) or _default_form(causal, facts)
    if packed is not False:
        _refuse_leaky_form(form, causal, facts)
    return Collator(**{**settings, "causal": causal, "form": form, **options})


def _read_contract(path: str | os.PathLike[str]) -> ShardContract | None:
    """What the output or shards at ``path`` declare (the manifest's contract, else the shards'
    metadata; ``None`` for another tool's shards): the one place the collator reads data, with
    the reader inspect and verify use."""
    from ..reading.shards import declared, open_input, refuse_conflicts

    shards, manifest = open_input(os.fspath(path), None, whole=False)
    found = declared(shards, manifest)
    refuse_conflicts(shards, found)
    return found.contract


def _settings(contract: ShardContract | None) -> dict[str, Any]:
    """Pad id, padding side, packed, and the tokenizer's vocabulary size, from the data's
    contract; all unknown (``None``: taken from the rows) without one."""
    if contract is None:
        return {"pad_id": None, "padding_side": None, "packed": None, "tokenizer_vocab": None}
    return {
        "pad_id": contract.pad_token_id,
        # Packs are padded at the end whatever side the tokenizer pads on.
        "padding_side": None if contract.packed else contract.padding_side,
        "packed": contract.packed,
        "tokenizer_vocab": contract.vocab_size,
    }


def _check_vocabulary(path: Any, tokenizer_vocab: Any, facts: ModelFacts) -> None:
    if tokenizer_vocab is None or facts.vocab_size is None:
        return
    if int(tokenizer_vocab) > facts.vocab_size:
        raise ConfigError(
            f"{path}: the rows were tokenized with a {tokenizer_vocab}-id vocabulary, but "
            f"{facts.name} embeds {facts.vocab_size} ids: another model's tokenizer?"
        )


def _flash(facts: ModelFacts | None) -> bool:
    return facts is not None and str(facts.attn_implementation or "").startswith("flash")


def _default_form(causal: bool, facts: ModelFacts | None) -> str:
    if causal and _flash(facts):
        return "position_ids"
    return "mask4d"


def _refuse_leaky_form(form: str, causal: bool, facts: ModelFacts | None) -> None:
    """Refuse the forms that would let packed documents see each other on this model."""
    if form == "position_ids" and not causal:
        raise ValueError(f"packed rows for an encoder {_ENCODER_PACKS}")
    if form == "mask4d" and _flash(facts):
        raise ValueError(
            f"{facts.attn_implementation if facts else 'flash attention'} takes no 4D mask: use "
            "form='position_ids' for packed rows"
        )
    if form == "position_ids" and not _flash(facts) and not _derives_block_mask():
        raise ValueError(
            "this transformers version builds no block-diagonal mask from position_ids outside "
            "flash attention: use form='mask4d' for packed rows"
        )


def _derives_block_mask() -> bool:
    """Whether the installed transformers builds a packed row's mask from ``position_ids`` (5.x
    does, when no attention mask and no cache are given)."""
    try:
        from transformers import masking_utils
    except ImportError:
        return False
    return hasattr(masking_utils, "find_packed_sequence_indices")


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
