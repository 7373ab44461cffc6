"""Optional dependencies, each behind its extra: a missing one is a one-line error naming it.

``pip install maskprep`` builds, inspects and merges without torch or datasets; what needs more
checks for it here before importing it, so that the user reads which extra to install instead of
a traceback from deep inside another package.
"""

from __future__ import annotations

from importlib.util import find_spec

from .errors import ConfigError


def require_extra(module: str, extra: str, purpose: str) -> None:
    """Raise :class:`~maskprep.errors.ConfigError` naming ``pip install 'maskprep[extra]'``
    unless ``module`` can be imported; ``purpose`` is what needs it (``"verify"``)."""
    try:
        found = find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a half-removed install
        found = False
    if not found:
        raise ConfigError(
            f"{purpose} needs {module}, which is not installed: pip install 'maskprep[{extra}]'"
        )
