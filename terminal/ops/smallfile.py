"""Reading a small file that the configuration names: the config itself, the trust list, keys.

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
