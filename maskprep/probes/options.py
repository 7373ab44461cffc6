"""How ``verify`` loads the model and feeds it: :class:`VerifyOptions`, and the names it accepts."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: How a collator may feed packed rows (see :mod:`maskprep.collate`); ``mask2d`` leaks, and is
#: only probed as a diagnostic.
PACK_FORMS = ("position_ids", "mask4d", "mask2d")
PROBES = (
    "pad-invariance",
    "unpadded-reference",
    "labels-loss",
    "labels-gradient",
    "cross-document",
    "causal",
)


@dataclass(frozen=True)
class VerifyOptions:
    """How ``verify`` loads the model and feeds it.

    ``from_config`` builds the model from its configuration with random weights (seeded by
    ``seed``), ``num_layers`` cutting it to that many layers. ``attn_implementations`` are tried in
    turn; unavailable ones are reported as skipped. ``pack_forms`` are the collator forms checked
    on packed rows (``mask2d`` is the leaky diagnostic); ``None`` checks the forms that keep
    documents apart for the model's kind: ``position_ids`` and ``mask4d`` for decoders, ``mask4d``
    for encoders (which build no mask from ``position_ids``). ``pad_position_ids`` feeds padded rows
    ``position_ids`` counted over real tokens, as a trainer using left padding with an
    absolute-position model must.
    """

    revision: str | None = None
    trust_remote_code: bool = False
    from_config: bool = False
    num_layers: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    attn_implementations: tuple[str, ...] = ATTN_IMPLEMENTATIONS
    pack_forms: tuple[str, ...] | None = None
    pad_position_ids: bool = False
    rows: int = 8
    seed: int = 0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        unknown = [a for a in self.attn_implementations if a not in ATTN_IMPLEMENTATIONS]
        if unknown or not self.attn_implementations:
            raise ConfigError(
                f"attention implementations must be among {', '.join(ATTN_IMPLEMENTATIONS)}, "
                f"not {', '.join(unknown) or 'none'}"
            )
        forms = self.pack_forms if self.pack_forms is not None else ("mask4d",)
        bad_forms = [f for f in forms if f not in PACK_FORMS]
        if bad_forms or not forms:
            raise ConfigError(
                f"pack forms must be among {', '.join(PACK_FORMS)}, not "
                f"{', '.join(bad_forms) or 'none'}"
            )
        for name in ("rows", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, not {self.num_layers}")
        if self.num_layers is not None and not self.from_config:
            raise ConfigError("num_layers only applies to a model built from its config")
