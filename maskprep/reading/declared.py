"""What the rows are declared to be before they are read: by the output's manifest, else by the
contract each shard carries in its schema metadata (:mod:`maskprep.contract`), else by nothing
(another tool's data: inspect then infers the layout from the rows).

Where both speak they must agree: a shard whose metadata contradicts the manifest that lists it
is not the shard the build wrote. ``inspect`` reports it as a failed ``shards_match_manifest``;
``verify`` and the collator, which would act on the wrong facts, refuse it
(:func:`refuse_conflicts`). Shards without a manifest must agree with each other; a directory
mixing shards of different builds is refused: which one's facts would hold the others?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import columns
from ..contract import ShardContract
from ..errors import DataError
from ..output.manifest import Manifest
from .shards import Shard

#: Where a contract came from, as results and reports name it.
FROM_MANIFEST = "manifest"
FROM_METADATA = "shard metadata"


@dataclass(frozen=True)
class Declared:
    """The contract the rows are held to and where it came from (``None``, ``""``: nothing
    declares them). ``conflicts`` maps a shard's number to how its metadata contradicts the
    manifest. ``stripped`` names the shards declared packs that lack ``seq_lens`` or
    ``position_ids``: a pipeline dropped them."""

    contract: ShardContract | None = None
    source: str = ""
    conflicts: dict[int, str] | None = None
    stripped: tuple[str, ...] = ()


def declared(shards: Sequence[Shard], manifest: Manifest | None) -> Declared:
    """The declared contract of ``shards``: the ``manifest``'s (with each shard's metadata
    checked against it), else the one their metadata agrees on, else none.

    Raises :class:`~maskprep.errors.DataError` for unreadable metadata and for shards without a
    manifest whose metadata disagree.
    """
    found = [shard.contract for shard in shards]
    if manifest is not None:
        expected = ShardContract.of_manifest(manifest)
        conflicts = {
            number: "metadata: " + ", ".join(contract.differences(expected, "manifest"))
            for number, contract in enumerate(found)
            if contract is not None and contract != expected
        }
        return Declared(expected, FROM_MANIFEST, conflicts, _stripped(shards, expected))
    carried = [(shard, contract) for shard, contract in zip(shards, found, strict=True) if contract]
    if not carried:
        return Declared()
    first_shard, first = carried[0]
    for shard, contract in carried[1:]:
        if contract != first:
            differ = ", ".join(contract.differences(first, first_shard.name))
            raise DataError(
                f"{shard.name}: its maskprep metadata says {differ}: shards of different "
                "builds; read them apart"
            )
    return Declared(first, FROM_METADATA, None, _stripped(shards, first))


def _stripped(shards: Sequence[Shard], contract: ShardContract) -> tuple[str, ...]:
    """The shards declared packs whose schema lacks a pack column."""
    if not contract.packed:
        return ()
    return tuple(
        shard.name
        for shard in shards
        if shard.schema is not None
        and not all(name in shard.schema.names for name in columns.PACK_COLUMNS)
    )


def refuse_conflicts(shards: Sequence[Shard], found: Declared) -> None:
    """Raise :class:`~maskprep.errors.DataError` for the first shard whose metadata contradicts
    its manifest, or that is declared a pack and lost its pack columns (readers that act on the
    facts: verify, the collator)."""
    if found.conflicts:
        number = min(found.conflicts)
        raise DataError(
            f"{shards[number].name}: its {found.conflicts[number]}; not the shard this build "
            "wrote (copied in from another output?)"
        )
    if found.stripped:
        raise DataError(
            f"{found.stripped[0]}: declared packed rows, but seq_lens and position_ids are gone "
            "(dropped by a pipeline?): the documents of a row cannot be kept apart; restore both "
            "columns or rebuild"
        )
