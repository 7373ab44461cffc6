"""Token ids as a user gives them (a pad id, an EOS id): what an ``int32`` ``input_ids`` column
holds, checked in one place for every option that takes one."""

from __future__ import annotations

from .errors import ConfigError

#: The largest token id an int32 column holds.
MAX_TOKEN_ID = (1 << 31) - 1


def token_id_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a token id (an integer from 0 to :data:`MAX_TOKEN_ID`), or
    ``None`` when nothing is."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{value!r} is not a token id (an integer from 0 to {MAX_TOKEN_ID})"
    if not 0 <= value <= MAX_TOKEN_ID:
        return f"{value} is not a token id (0 to {MAX_TOKEN_ID})"
    return None


def check_token_id(field: str, value: object) -> None:
    """Raise :class:`~maskprep.errors.ConfigError` naming ``field`` unless ``value`` is ``None``
    (not given) or a token id."""
    problem = None if value is None else token_id_problem(value)
    if problem is not None:
        raise ConfigError(f"{field}: {problem}")
