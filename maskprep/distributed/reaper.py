"""A private local Ray cluster that dies with the build that started it, however the build ends.

``ray.init(address="local")`` starts a raylet, a GCS server and per-node agents. When the driver
is killed outright (SIGKILL, the OOM killer) nothing of Ray's own clean-up runs: the raylet and
the GCS server follow the driver, but the agents it started (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) lived on, measured, for one to one and a half minutes, and workers
caught mid-task can too. So before the cluster starts, a small reaper process is started beside
the build, in its own session (a Ctrl-C in the terminal does not reach it), holding the read end
of a pipe whose write end only the build holds. Every process of the cluster inherits a marker
variable, unique to this build, in its environment. When the pipe closes (the build ended:
normally, on an error, on a signal, or killed), the reaper kills what is left with that marker,
and exits. A cluster the build joined (``RAY_ADDRESS``) is never touched.

The marker is read from ``/proc/PID/environ``, so the cluster starts with ``SPT_NOENV=1``: Ray's
agents rename themselves with setproctitle, which otherwise takes the start of the environment
block for the new title and leaves ``/proc/PID/environ`` with the first variables wiped. Which
variables come first is the raylet's choice, so the marker was sometimes among them, and the
agents of a killed build then lived on (seen in CI). Ray sets the same variable for its workers.

Ray also installs its own handler for SIGTERM (its C++ failure-signal handler aborts: exit 134),
and ``ray.shutdown`` leaves SIGTERM at the default action (the process dies of it), so the
handlers the caller had (the command line's, which stop the build cleanly with exit 143) are
put back once the cluster is up and again once it is shut down, before the merge.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

#: The variable every process of a private cluster carries, with the build's own value.
MARKER = "MASKPREP_RAY_CLUSTER"


@contextlib.contextmanager
def private_cluster(ray: Any, **init: Any) -> Iterator[None]:
    """``ray.init(address="local", **init)`` for the body; the cluster shut down after it, and
    whatever of it is left killed by the reaper, even when this process is killed."""
    marker = secrets.token_hex(8)
    reaper = _start_reaper(marker)
    assert reaper.stdin is not None
    try:
        with _variables_set({MARKER: marker, "SPT_NOENV": "1"}), keep_signal_handlers():
            ray.init(address="local", **init)
    except BaseException:
        reaper.stdin.close()
        raise
    with contextlib.suppress(Exception):
        # Ray marks what its node starts with the node's id too: a second mark to go by.
        reaper.stdin.write(f"{ray.get_runtime_context().get_node_id()}\n".encode())
        reaper.stdin.flush()
    try:
        yield
    finally:
        try:
            with keep_signal_handlers():
                ray.shutdown()
        finally:
            reaper.stdin.close()  # the reaper removes what is left, then exits


def _start_reaper(marker: str) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if k != MARKER}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from maskprep.distributed.reaper import main; main()",
            marker,
            str(os.getpid()),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
        start_new_session=True,
        close_fds=True,
    )


@contextlib.contextmanager
def _variables_set(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` set in this process's environment for the body (what the cluster's
    processes inherit), and put back as they were after it."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Put SIGINT's and SIGTERM's handlers back as they were after the body (``ray.init``
    installs its own under Python's, and ``ray.shutdown`` sets the default action)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in handlers.items():
            if handler is not None:
                signal.signal(number, handler)


def main() -> None:
    """The reaper: wait until the build closes the pipe (its end, whichever way it came), then
    kill every process that carries the build's marker, or the id of the node the build started,
    until none has for three seconds (a dying raylet may still start one; with one second of
    quiet, Ray's per-node agents were once seen alive 15 s after a stopped build, on a loaded
    machine)."""
    marker, build = sys.argv[1], int(sys.argv[2])
    node = b""
    with contextlib.suppress(OSError):
        node = sys.stdin.buffer.read().strip()
    needles = {f"{MARKER}={marker}".encode()}
    if node:
        needles.add(b"RAY_NODE_ID=" + node)
    quiet = 0
    deadline = time.monotonic() + 30
    while quiet < 12 and time.monotonic() < deadline:
        found = [pid for pid in _pids() if pid != build and needles & set(_environment(pid))]
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        quiet = 0 if found else quiet + 1
        time.sleep(0.25)


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []  # no /proc (not Linux): nothing this reaper can find


def _environment(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []
