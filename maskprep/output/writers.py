"""Who writes an output: each writer keeps a record, ``.maskprep-writer-<tag>.json`` (its host,
pid and what it does), from the moment it starts writing to its end.

The record is a courtesy, never a condition of safety (:mod:`.commit`): it lets a plain build
refuse to join another one with the words "another maskprep process is writing", and tells a
reader (``inspect``) that a build is running or died there. Locally the writer holds the record's
``flock`` while it lives (the kernel lets go when it dies), so a record whose lock is free is a
dead writer's garbage; on an object store nobody can tell a live writer from a dead one, and no
clock is trusted to.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

from .. import storage
from ..errors import OVERWRITE, RESUME, OutputError
from .names import writer_name


@dataclass(frozen=True)
class WriterRecord:
    """Another writer's record, as read."""

    name: str
    host: str = "?"
    pid: int = 0
    #: Known alive (a local writer holding the record's flock); ``False``: not known either way.
    running: bool = False

    def refusal(self, url: str) -> OutputError:
        """Why a plain build does not write into ``url`` beside this writer."""
        if self.running:
            return OutputError(
                f"{url}: another maskprep process (pid {self.pid}) is writing to this "
                "directory; wait for it or use another output directory"
            )
        return OutputError(
            f"{url}: another writer ({self.host}, pid {self.pid}) began writing here and has not "
            f"finished ({self.name}); it may still be running, or have died: resume the build "
            f"({RESUME}) or overwrite it ({OVERWRITE})",
            suggests=(RESUME, OVERWRITE),
        )


def other_writers(location: storage.Location, names: list[str]) -> list[WriterRecord]:
    """The writers whose records (``names``) are in the output at ``location`` and that are, or
    may be, alive (see the module notes)."""
    found = []
    for name in names:
        record = location.join(name)
        running = storage.is_held(record)
        if running is False:
            continue  # gone, or its writer died: garbage
        try:
            fields = json.loads(storage.read_bytes(record))
            found.append(WriterRecord(name, str(fields["host"]), int(fields["pid"]), bool(running)))
        except (storage.StorageError, ValueError, KeyError, TypeError):
            continue  # gone meanwhile, or unreadable: not a writer to wait for
    return found


def hold_record(location: storage.Location, tag: str, action: str) -> storage.Held:
    """This writer's own record in the output at ``location``, held until released."""
    data = {"host": socket.gethostname(), "pid": os.getpid(), "action": action}
    body = (json.dumps(data, sort_keys=True) + "\n").encode()
    return storage.hold(location.join(writer_name(tag)), body)
