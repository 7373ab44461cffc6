"""One finished part of an array build, as ``merge`` reads it: its directory (or prefix) and
its manifest, checked to be a part's."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import storage
from ..errors import RESUME, ConfigError, DataError
from ..output.manifest import Manifest, find_manifest_at, load_manifest, manifest_problems
from ..output.names import MANIFEST_NAME


@dataclass(frozen=True)
class PartOutput:
    """One finished part: its directory (or prefix) and manifest (which has a ``part`` entry)."""

    directory: storage.Location
    manifest: Manifest

    @property
    def index(self) -> int:
        """The part's index, 0-based."""
        assert self.manifest.part is not None
        return self.manifest.part.index

    @property
    def count(self) -> int:
        """How many parts the build has."""
        assert self.manifest.part is not None
        return self.manifest.part.count


def read_part(
    directory: str | os.PathLike[str], options: storage.StorageOptions | None = None
) -> PartOutput:
    """Read a finished part's manifest (a local directory or a URL); an unfinished output, a
    whole build or a manifest that does not add up is refused."""
    location = storage.parse_location(directory, options)
    found = find_manifest_at(location)
    if found is None:
        raise ConfigError(
            f"{location}: not a finished part (no {MANIFEST_NAME}); finish its build ({RESUME}) "
            "before merging",
            suggests=(RESUME,),
        )
    manifest = load_manifest(found)
    if manifest.part is None:
        raise ConfigError(f"{location}: a whole build, not a part (built without a part index)")
    problems = manifest_problems(manifest, location)
    if problems:
        raise DataError(f"{found}: {problems[0]}")
    return PartOutput(location, manifest)
