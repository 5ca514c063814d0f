"""The JSONL mirror of the audit trail (VERITTA_AUDIT_LOG_PATH).

One canonical JSON line per record, appended while the chain lock is held, so
lines are in `seq` order. Rotation-safe: if the path no longer names the
file we hold open (logrotate moved it), the path is reopened.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from django.conf import settings


class JsonlMirror:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _open(self) -> None:
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        st = os.fstat(fd)
        self._fd, self._inode = fd, (st.st_dev, st.st_ino)

    def _current(self) -> int:
        try:
            st = os.stat(self.path)
            rotated = (st.st_dev, st.st_ino) != self._inode
        except FileNotFoundError:
            rotated = True
        if self._fd is None or rotated:
            self._open()
        assert self._fd is not None
        return self._fd

    def append(self, lines: list[bytes]) -> None:
        """Write the lines with one write(2): raises OSError if that fails."""
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            fd = self._current()
            # Writers are serialized by the chain lock, so the size before our
            # write is where a failed write must be cut back to: a full disk
            # must not leave half a line for the next record to follow.
            size_before = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write to audit mirror ({written} of {len(data)} bytes)")
            except OSError:
                try:
                    os.ftruncate(fd, size_before)
                except OSError:
                    pass  # the original error is the one to report
                raise

    def check_writable(self) -> None:
        with self._lock:
            self._current()

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None


_mirror: JsonlMirror | None = None
_mirror_setting: object = None  # the VERITTA_AUDIT_LOG_PATH `_mirror` was made for


def mirror() -> JsonlMirror:
    """The mirror of VERITTA_AUDIT_LOG_PATH (a new one when the setting
    changes; compared as set, not as a Path: this runs in every write
    transaction, under the lock)."""
    global _mirror, _mirror_setting
    configured = settings.VERITTA_AUDIT_LOG_PATH
    if _mirror is None or configured != _mirror_setting:
        _mirror, _mirror_setting = JsonlMirror(configured), configured
    return _mirror
