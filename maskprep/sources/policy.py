"""The bad-record policy (``on_bad_record``), applied to the rejected records in input order as
they arrive in the stream, and the counts of the read side that a build's totals and resume
points keep."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import RejectLimit
from ..errors import BadRecordError, DataError
from .records import Rejected


class RejectsPastLimit(DataError):
    """More records were rejected than ``max_rejects`` allows: the build fails as a bad record
    under the ``fail`` policy does (no manifest; its complete shards stay for a resume), publishing
    the rejects file to say why."""


@dataclass
class RejectPolicy:
    """What the read side counts, and the bad-record policy applied to the rejected records as
    they arrive: ``fail`` (no ``write``) raises at the first one, ``skip`` writes each with
    ``write`` (which returns the line written) and counts it, up to ``limit``. ``staged``: the
    build writes beside a finished output it would replace, which a failed build leaves as it
    was, rejects file and all (this build's rejects go with its staging)."""

    write: Callable[[Rejected], str] | None
    limit: RejectLimit | None = None
    staged: bool = False
    documents: int = 0
    rejected: int = 0
    without_labels: int = 0
    #: Told every line written to the rejects file (the resume points keep them).
    log: Callable[[str], None] | None = None

    @property
    def read(self) -> int:
        """Records read so far: used or rejected."""
        return self.documents + self.rejected

    def counts(self) -> dict[str, int]:
        """The counts, for a resume point."""
        return {
            "documents": self.documents,
            "rejected": self.rejected,
            "without_labels": self.without_labels,
        }

    def restore(self, counts: dict[str, int]) -> None:
        """Take up the counts of a resume point."""
        self.documents = int(counts["documents"])
        self.rejected = int(counts["rejected"])
        self.without_labels = int(counts["without_labels"])

    def reject(self, items: list[Rejected]) -> None:
        """Apply the policy to ``items``, in order."""
        for item in items:
            if self.write is None:
                raise BadRecordError(item.location, item.reason)
            self.rejected += 1
            self.without_labels += item.without_labels
            line = self.write(item)
            if self.log is not None:
                self.log(line)
            if self.limit is not None and self.limit.count is not None:
                # A count is known to be passed as soon as it is: no need to read on.
                self.check_limit(item.location, finished=False)

    def check_limit(self, where: str, *, finished: bool) -> None:
        """Raise :class:`RejectsPastLimit` when the rejects are past the limit; a percentage is
        judged only once the input is ``finished``."""
        limit = self.limit
        if limit is None or (limit.percent is not None and not finished):
            return
        read = self.read
        if not limit.exceeded(self.rejected, read):
            return
        share = f" of {read:,} read ({100 * self.rejected / read:.1f}%)" if finished else ""
        after = (
            "the finished output there is left as it was"
            if self.staged
            else "the rejects file says why each was"
        )
        raise RejectsPastLimit(
            f"{where}: {self.rejected:,} records rejected{share}, more than the max_rejects "
            f"limit of {limit}; {after}"
        )
