"""A real S3-protocol server for tests and benchmarks: moto in server mode on loopback.

``python -m moto.server -H 127.0.0.1 -p PORT`` runs in a child process on a free port; clients
reach it only through the standard AWS variables (:meth:`S3Server.client_env`). The child is tied
to this process: stopped by :meth:`S3Server.stop`, at interpreter exit, and (Linux) sent SIGTERM
by the kernel if this process dies first, however it dies, so it never outlives the tests.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
#: Terminal colour codes, which werkzeug writes into its request log.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Variables that could point a client elsewhere (a real account, a profile) and are cleared.
FOREIGN_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def free_port() -> int:
    """A TCP port nobody listens on right now (the server may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _die_with_parent(parent: int):
    def tie() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return tie


class S3Server:
    """A running moto server; use :meth:`start` and :meth:`stop` (or ``with``)."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def requests(self, method: str, path: str = "") -> int:
        """Requests of ``method`` (a regular expression: ``"GET|HEAD"``) the server has logged so
        far, for paths starting with ``/path`` when given. Werkzeug colours a request line by its
        status (a 206 range answer in magenta) even in a file, so the codes are taken out first."""
        text = _ANSI.sub("", self.log.read_text(errors="replace"))
        return len(re.findall(rf'"(?:{method}) /{re.escape(path)}', text))

    @property
    def endpoint(self) -> str:
        """The URL clients put in ``AWS_ENDPOINT_URL``."""
        return f"http://{HOST}:{self.port}"

    def client_env(self, config_dir: Path) -> dict[str, str]:
        """The standard AWS variables that point a client here, and nowhere else: dummy keys,
        and config files in ``config_dir`` (absent) instead of the user's ``~/.aws``."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "maskprep-test",
            "AWS_SECRET_ACCESS_KEY": "maskprep-test-secret",
            "AWS_CONFIG_FILE": str(config_dir / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    @classmethod
    def start(
        cls, log_dir: Path, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> S3Server:
        """Start a server on a free loopback port and wait until it answers HTTP."""
        last_error = ""
        for _attempt in range(3):
            port = free_port()
            log = log_dir / f"moto-{port}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                    preexec_fn=_die_with_parent(os.getpid()),
                )
            server = cls(process, port, log)
            atexit.register(server.stop)
            if server._wait(timeout):
                return server
            server.stop()
            last_error = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"moto server did not start:\n{last_error}")

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # any HTTP answer means it is serving
            except OSError:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it; safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # a server for trying things by hand: python tests/s3_server.py
    import tempfile

    with S3Server.start(Path(tempfile.mkdtemp())) as running:
        print(f"AWS_ENDPOINT_URL={running.endpoint}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            running.process.wait()
