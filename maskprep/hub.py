"""Hub names and local directories told apart before transformers is asked to load one.

``from_pretrained(name)`` loads a local directory when ``name`` is one, and otherwise treats
``name`` as a Hub repository id: a mistyped local path then fails with a message about repository
ids ("Repo id must be in the form 'repo_name' or 'namespace/repo_name'"), or with a network
error. :func:`check_local` says what is wrong instead when ``name`` can only mean a local path.
"""

from __future__ import annotations

import os

from .errors import ConfigError

_LOCAL_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")


def looks_local(name: str) -> bool:
    """Whether ``name`` can only be a local path, not a Hub repository id: it starts like a
    path (``/``, ``./``, ``../``, ``~``), its first directory exists here, or it is no valid
    repository id at all (more than one ``/``, characters a repository name cannot hold)."""
    if name in (".", "..") or name.startswith(_LOCAL_PREFIXES) or os.path.isabs(name):
        return True
    head = name.split("/", 1)[0]
    if "/" in name and os.path.isdir(head):
        return True
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def check_local(name: str, what: str) -> None:
    """Raise :class:`~maskprep.errors.ConfigError` when ``name`` (of a ``what``: "tokenizer",
    "model") can only be a local directory and is not one; a Hub name passes."""
    if os.path.isdir(name):
        return
    if os.path.exists(name):
        raise ConfigError(f"{name}: not a directory; a local {what} is a directory")
    if looks_local(name):
        raise ConfigError(
            f"{name}: no such directory (a local {what} is a directory; a Hub name is "
            "'name' or 'namespace/name')"
        )
