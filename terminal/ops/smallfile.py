"""Small files: reading one the configuration names (the config itself, the trust list, keys),
and writing one atomically (:func:`write_atomic`: keys, the status file, installed files, panels).

Only a regular file is read. A FIFO or a device named by mistake (or on purpose) would block
the open or the read forever, and the daemon with it, deaf to SIGTERM at start; a huge file
would fill memory before any parser could refuse it. Both are refused as an :class:`OSError`
whose ``strerror`` says why, so callers report them like any other unreadable file.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_small(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; OSError otherwise."""
    # stat before open: opening a device can have effects (a serial line's DTR) even non-blocking.
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    # O_NONBLOCK: should a FIFO take the file's place after the stat, the open still returns.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        chunks, size = [], 0
        while chunk := os.read(fd, min(limit + 1 - size, 1 << 16)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = False) -> None:
    """Replace ``path`` by ``data``: readers see the old file or the new one, never half of one.

    The file has ``mode`` from its creation on (a key is never briefly world-readable; a stale
    temporary file's mode is corrected too). ``durable`` syncs it to disk before the rename, for
    what must survive a power cut (keys), not for a file rewritten every few seconds. The hidden
    temporary file is removed if the write fails.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)  # open() applied the umask, and no mode at all to an existing file
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
