"""Start-up hook for tests that run maskprep as if some packages were not installed.

A subprocess whose ``PYTHONPATH`` starts with this directory imports this module at start-up;
the top-level packages named in ``MASKPREP_TEST_HIDE`` (comma-separated) are then invisible:
``importlib.util.find_spec`` finds nothing, as transformers' availability checks ask, and
``import`` fails with ``ModuleNotFoundError``, as when the package is missing.
"""

from __future__ import annotations

import os
import sys

HIDDEN = frozenset(filter(None, os.environ.get("MASKPREP_TEST_HIDE", "").split(",")))


class _Hiding:
    """Wraps one import finder so that it finds nothing under the hidden packages."""

    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(name, path, target) if find is not None else None

    def __getattr__(self, attribute):
        return getattr(self._finder, attribute)


if HIDDEN:
    sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
