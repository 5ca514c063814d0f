"""Throwaway Redis / PostgreSQL servers for tests (no Django imports).

Both servers bind 127.0.0.1 on a free port, keep all state in a temp dir and
are torn down by ``stop()`` / leaving the ``with`` block.  ``kill()`` simulates
a crash but keeps the temp dir, so ``start()`` can bring the same server back
on the same port (e.g. to test reconnection); ``stop()`` then cleans up.

Missing binaries raise ``ServerError`` -- tests must never silently skip.
"""

from __future__ import annotations

import atexit
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TIMEOUT = 30.0  # seconds to wait for a server to come up / go down


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ServerError(
                    f"nothing listening on {host}:{port} after {timeout}s"
                ) from exc
            time.sleep(0.05)


def _die_with_parent() -> None:
    # preexec_fn: SIGKILL the server if the test process dies without cleanup
    # (e.g. pytest-timeout's thread method calls os._exit). Runs after setuid.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Server:
    """Shared process lifecycle: start/stop/kill, context manager, atexit."""

    name = "server"
    _stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.port: int | None = None
        self.tmpdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._atexit_registered = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self.tmpdir is None:
            self.tmpdir = Path(
                tempfile.mkdtemp(prefix=f"veritta-{self.name}-", dir=self._tmp_parent())
            )
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _tmp_parent(self) -> str | None:
        return None

    def _start(self) -> None:
        raise NotImplementedError

    def _signal(self, sig: int, timeout: float) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the server (crash simulation); temp dir is kept for start()."""
        self._signal(signal.SIGKILL, TIMEOUT)

    def stop(self) -> None:
        """Graceful shutdown and removal of the temp dir. Idempotent."""
        self._signal(self._stop_signal, TIMEOUT)
        self.proc = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def _spawn(self, argv: list[str], log: Path, **kw) -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (prctl only, no locks)
                **kw,
            )


class RedisServer(_Server):
    name = "redis"

    def __init__(self, executable: str = "redis-server") -> None:
        super().__init__()
        self.executable = executable

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _start(self) -> None:
        exe = shutil.which(self.executable)
        if exe is None:
            raise ServerError(
                f"{self.executable!r} not found on PATH; install the Debian package "
                "redis-server (scripts/test does this when run as root)"
            )
        pinned = self.port is not None  # restart after kill(): keep the same URL
        log = self.tmpdir / "redis.log"
        for _attempt in range(1 if pinned else 3):
            port = self.port if pinned else free_port()
            self.proc = self._spawn(
                [
                    exe,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(self.tmpdir),
                ],
                log,
            )
            if self._wait_ping(port):
                self.port = port
                return
            # Most likely lost a race for the port: retry with a new one.
            self._signal(signal.SIGKILL, TIMEOUT)
        raise ServerError(f"redis-server did not answer PING:\n{_tail(log)}")

    def _wait_ping(self, port: int) -> bool:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False


def postgres_bindir() -> Path:
    """Directory with initdb/postgres: pg_config --bindir, else newest Debian one."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run(
            [pg_config, "--bindir"], check=False, capture_output=True, text=True
        )
        if out.returncode == 0:
            candidates.append(out.stdout.strip())
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[4].split(".")]
    )
    candidates += reversed(versions)
    for d in candidates:
        if d and os.access(os.path.join(d, "initdb"), os.X_OK):
            return Path(d)
    raise ServerError(
        "PostgreSQL server binaries (initdb) not found; install the Debian package "
        "postgresql (scripts/test does this when run as root)"
    )


class PostgresCluster(_Server):
    """initdb + postgres with trust auth; superuser ``postgres``.

    As root the server runs as the ``postgres`` OS user (postgres refuses to
    run as root); we switch user with Popen(user=...) instead of runuser so
    that ``self.proc`` is the postmaster itself and can be signalled directly.
    """

    name = "pg"
    _stop_signal = signal.SIGINT  # "fast" shutdown: don't wait for clients

    # What a durable cluster runs with (the benchmarks state it in their output).
    DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

    def __init__(self, *, durable: bool = False) -> None:
        """``durable``: fsync, synchronous_commit and full_page_writes on, as a
        production server runs (the benchmarks); the default turns fsync and
        full-page writes off, which the tests do not need."""
        super().__init__()
        self.durable = durable
        self.bindir: Path | None = None
        self._as_user: dict = {}

    def settings(self) -> dict[str, str]:
        """The durability settings the server was started with (-c flags)."""
        if self.durable:
            return dict(self.DURABLE_SETTINGS)
        return {"fsync": "off", "synchronous_commit": "on", "full_page_writes": "off"}

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def _tmp_parent(self) -> str | None:
        # The postgres OS user must be able to traverse the parent dir.
        return "/tmp" if os.geteuid() == 0 else None

    def _run(self, tool: str, *args: str) -> None:
        out = subprocess.run(
            [str(self.bindir / tool), *args],
            check=False,
            cwd=self.tmpdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 2,
            **self._as_user,
        )
        if out.returncode != 0:
            raise ServerError(
                f"{tool} failed ({out.returncode}):\n{out.stdout}{out.stderr}"
            )

    def _start(self) -> None:
        self.bindir = postgres_bindir()
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerError(
                    "running as root but there is no 'postgres' OS user"
                ) from None
            os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
            self._as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        data = self.tmpdir / "data"
        if not data.exists():  # restart after kill() reuses the data dir
            self._run(
                "initdb",
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                *([] if self.durable else ["--no-sync"]),
            )
        pinned = self.port is not None
        log = self.tmpdir / "postgres.log"
        for _attempt in range(1 if pinned else 3):
            port = self.port if pinned else free_port()
            self.proc = self._spawn(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(self.tmpdir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    # Durability is pointless for a throwaway test cluster
                    # (synchronous_commit stays on: kill() must not lose
                    # commits); a durable one (benchmarks) keeps all three on.
                    *(f for k, v in self.settings().items() for f in ("-c", f"{k}={v}")),
                ],
                log,
                cwd=self.tmpdir,
                **self._as_user,
            )
            if self._wait_ready(port):
                self.port = port
                return
            self._signal(signal.SIGKILL, TIMEOUT)
        raise ServerError(f"postgres did not become ready:\n{_tail(log)}")

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            # pg_isready, not a bare TCP connect: the port opens before
            # the server accepts connections (crash recovery etc.).
            rc = subprocess.run(
                [
                    str(self.bindir / "pg_isready"),
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-t",
                    "1",
                ],
                check=False,
                stdin=subprocess.DEVNULL,
            ).returncode
            if rc == 0:
                return True
            time.sleep(0.1)
        return False

    def kill(self) -> None:
        """Crash-like immediate shutdown (SIGQUIT): no checkpoint, so the next
        start() runs crash recovery. Unlike SIGKILL, the postmaster also takes
        its backends down, so nothing lingers to block a restart."""
        self._signal(signal.SIGQUIT, TIMEOUT)

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        self._run(
            "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name
        )
        return self.url(name)
