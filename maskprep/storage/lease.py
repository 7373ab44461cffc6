"""A lock object for outputs on object stores, which have no flock: a lease.

The lock is a small JSON object created with put-if-absent, so of two writers exactly one gets
it. It names its holder (a random owner id, host, pid) and a time to live; the holder renews it
(a compare-and-swap on its ETag) more often than that. A holder that dies stops renewing, and
once the store has not seen a renewal for ``ttl`` seconds another writer may take the lease over
with a compare-and-swap on the ETag it read, which fails if the holder renewed in between. A
holder that finds its ETag replaced has lost the lease and must stop writing.

On a store without compare-and-swap (GCS and Azure as wired here, local files) the lease is
created the same way but never lapses: ``ttl`` is recorded as ``null``, renewing does nothing,
and a crashed writer's lock object has to be removed by hand.

Staleness is judged by the store's own clock where it gives one (S3 ``LastModified``) against
the clock of the process that wants the lease, so the holder's clock never matters and clocks
need only agree to well within ``ttl``. Local outputs keep :mod:`maskprep.locking` (flock, which
the kernel releases when the process dies).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType

from .errors import AlreadyExists, NotFound, StorageError, VersionMismatch
from .location import Location
from .operations import delete, delete_if_match, put_if_absent, read_with_info, replace_if_match
from .protocols import capabilities

#: Default time to live: long enough for a slow batch between renewals, short enough that a
#: crashed build's output can be resumed a few minutes later.
DEFAULT_TTL = 120.0


class LeaseHeld(StorageError):
    """Another writer holds the lease and it has not lapsed."""


class LeaseLost(StorageError):
    """This writer's lease was taken over (it failed to renew in time): stop writing."""


@dataclass(frozen=True)
class LeaseRecord:
    """What the lock object holds."""

    owner: str
    host: str
    pid: int
    #: Seconds without renewal after which the lease lapses; ``None``: it never does.
    ttl: float | None
    #: The holder's own clock at the last renewal, for people reading the lock; staleness is
    #: judged from the store's time (see the module notes).
    renewed: float

    def to_bytes(self) -> bytes:
        """The record as the lock object's JSON bytes."""
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, url: str) -> LeaseRecord:
        """Parse a lock object; anything else is an error naming it (never taken over)."""
        try:
            fields = json.loads(data)
            return cls(
                str(fields["owner"]),
                str(fields["host"]),
                int(fields["pid"]),
                None if fields["ttl"] is None else float(fields["ttl"]),
                float(fields["renewed"]),
            )
        except (ValueError, KeyError, TypeError):
            raise StorageError(url, "not a maskprep lock object; remove it by hand") from None


class Lease:
    """One writer's lease on ``location``; a context manager (acquire, release)."""

    def __init__(
        self,
        location: Location,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.location = location
        self.ttl = ttl
        self.owner = uuid.uuid4().hex
        self._clock = clock
        self.renewable = capabilities(location).compare_and_swap
        self._etag: str | None = None
        self._renewed = 0.0

    def _record(self) -> bytes:
        ttl = self.ttl if self.renewable else None
        record = LeaseRecord(self.owner, socket.gethostname(), os.getpid(), ttl, self._clock())
        return record.to_bytes()

    @property
    def held(self) -> bool:
        """Whether this writer holds the lease (as far as it knows)."""
        return self._etag is not None

    def acquire(self) -> None:
        """Take the lease, or take over a lapsed one; :class:`LeaseHeld` if another writer
        holds it, :class:`~maskprep.storage.errors.Unsupported` on a store without conditional
        writes."""
        now = self._clock()
        try:
            result = put_if_absent(self.location, self._record())
        except AlreadyExists:
            self._take_over()
            return
        self._held(result.etag, now)

    def _take_over(self) -> None:
        try:
            data, info = read_with_info(self.location)
        except NotFound:
            self.acquire()  # released between our two requests: try again from the start
            return
        current = LeaseRecord.from_bytes(data, self.location.url)
        holder = f"held by another writer ({current.host}, pid {current.pid})"
        if current.ttl is None or info.etag is None:
            raise LeaseHeld(
                self.location.url,
                f"{holder} on a store where a lease never lapses; once that writer is gone, "
                "delete this lock object by hand",
            )
        seen = info.mtime if info.mtime is not None else current.renewed
        age = self._clock() - seen
        if age <= current.ttl:
            raise LeaseHeld(
                self.location.url,
                f"{holder}, renewed {max(age, 0):.0f} s ago; it lapses "
                f"{current.ttl:.0f} s after its last renewal",
            )
        now = self._clock()
        try:
            result = replace_if_match(self.location, self._record(), info.etag)
        except (VersionMismatch, NotFound):
            raise LeaseHeld(
                self.location.url, "another writer renewed or took the lease meanwhile"
            ) from None
        self._held(result.etag, now)

    def _held(self, etag: str | None, now: float) -> None:
        # Stores without compare-and-swap need no ETag; a placeholder marks the lease as held.
        self._etag = etag or "held"
        self._renewed = now

    def renew(self) -> None:
        """Renew the lease now; :class:`LeaseLost` if another writer took it over."""
        if self._etag is None:
            raise LeaseLost(self.location.url, "this writer does not hold the lease")
        if not self.renewable:
            return
        now = self._clock()
        try:
            result = replace_if_match(self.location, self._record(), self._etag)
        except (VersionMismatch, NotFound):
            self._etag = None
            raise LeaseLost(
                self.location.url, "the lease was taken over by another writer"
            ) from None
        self._held(result.etag, now)

    def renew_if_due(self) -> None:
        """Renew when a third of the time to live has passed since the last renewal: cheap
        enough to call between every batch a build writes."""
        if self._clock() - self._renewed >= self.ttl / 3:
            self.renew()

    def release(self) -> None:
        """Delete the lock object if it is still ours; :class:`LeaseLost` if it is not."""
        etag, self._etag = self._etag, None
        if etag is None:
            return
        if not self.renewable:
            delete(self.location)
            return
        try:
            delete_if_match(self.location, etag)
        except (VersionMismatch, NotFound):
            raise LeaseLost(
                self.location.url, "the lease was taken over by another writer"
            ) from None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
