"""Serve a simulated serial device on a pseudo-terminal or a TCP port, with line faults.

A *handler* is the device: it gets the bytes the host wrote (in whatever chunks they
arrive) and returns the bytes to answer (``b""`` for none; it may sleep to model the device's
own processing time). The endpoint owns the line: one background thread moves bytes, and the
knobs in :class:`LineFaults` bend them the way real lines do.

    with SerialEndpoint(handler, kind="pty") as ep:     # or kind="tcp"
        link = SerialLink(ep.url)                       # a path, or socket://127.0.0.1:PORT
        ep.faults.chunk_size = 7                        # answers dribble out 7 bytes at a time
        ep.unplug(); ...; ep.replug()

Unplug is modelled the way the host sees it:

- ``pty``: the URL is a symlink (like a udev name ``/dev/gate/idcard``) to the current
  ``/dev/pts/N``. Unplug closes the pty (the host's open fd gets EIO/hang-up) and removes the
  symlink (reopening fails: no such file); replug makes a fresh pty and points the symlink at
  it — a pty path cannot be reused, exactly as a USB adapter may come back as another ttyUSB.
- ``tcp``: unplug drops the connection and closes the listening socket (connects are refused);
  replug listens again on the same port.
"""
from __future__ import annotations

import errno
import os
import queue
import select
import socket
import tempfile
import threading
import tty
from dataclasses import dataclass
from typing import Literal, Protocol


class Handler(Protocol):
    def received(self, data: bytes) -> bytes:
        """Bytes from the host (any chunking) -> bytes to send back (may be empty)."""
        ...

    def reset(self) -> None:
        """The line was (re)connected: forget any partial input."""
        ...


@dataclass
class LineFaults:
    """Knobs applied to every answer the handler returns. Set them at any time."""

    garbage: bytes = b""     # sent before every answer (noise on the line, a stale reply)
    chunk_size: int = 0      # > 0: the answer is written in pieces of this many bytes...
    chunk_delay: float = 0.0  # ...with this pause between pieces
    truncate_next: int = 0   # the next N answers stop half-way (the device died mid-frame)
    mute: bool = False       # the device reads but never answers


class SerialEndpoint:
    def __init__(self, handler: Handler, kind: Literal["pty", "tcp"] = "pty",
                 faults: LineFaults | None = None):
        if kind not in ("pty", "tcp"):
            raise ValueError(f"kind must be 'pty' or 'tcp', not {kind!r}")
        self.handler = handler
        self.kind = kind
        self.faults = faults or LineFaults()
        self.answers = 0  # answers sent (after faults), for tests
        self._requests: queue.Queue[tuple[str, bytes, threading.Event]] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        # pty state
        self._dir: str | None = None
        self._master = -1
        self._slave = -1
        # tcp state
        self._port = 0
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self.url = ""

    # -- control (caller's thread) ---------------------------------------------------------

    def start(self) -> "SerialEndpoint":
        self._wake_r, self._wake_w = os.pipe()
        if self.kind == "pty":
            self._dir = tempfile.mkdtemp(prefix="sim-serial-")
            self.url = os.path.join(self._dir, "tty")
        self._plug()
        if self.kind == "tcp":
            self.url = f"socket://127.0.0.1:{self._port}"
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._request("stop")
        self._thread.join()
        self._thread = None
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._dir is not None:
            os.rmdir(self._dir)
            self._dir = None

    @property
    def connected(self) -> bool:
        """A host can hear the device: the pty is plugged in, or a TCP client is connected."""
        return self._master >= 0 if self.kind == "pty" else self._conn is not None

    def unplug(self) -> None:
        """Take the device away; returns once the host can see it gone."""
        self._request("unplug")

    def replug(self) -> None:
        """Bring the device back (a fresh pty, or the same TCP port listening again)."""
        self._request("replug")

    def send(self, data: bytes) -> None:
        """Unsolicited bytes from the device (a stale answer, line noise), no faults applied."""
        self._request("send", data)

    def emit(self, data: bytes) -> None:
        """Bytes the device sends of its own accord (a scan engine's code), faults applied
        as to an answer; returns once they are on the line (or dropped: nobody connected)."""
        self._request("emit", data)

    def __enter__(self) -> "SerialEndpoint":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _request(self, what: str, data: bytes = b"") -> None:
        done = threading.Event()
        self._requests.put((what, data, done))
        os.write(self._wake_w, b"!")
        while not done.wait(0.1):
            if self._thread is None or not self._thread.is_alive():
                return  # the line thread is gone (handler crashed): nothing left to do

    # -- the line (endpoint thread) ---------------------------------------------------------

    def _plug(self) -> None:
        if self.kind == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)  # no echo, no line discipline: bytes are bytes
            os.set_blocking(self._master, False)
            tmp = self.url + ".new"
            os.symlink(os.ttyname(self._slave), tmp)
            os.replace(tmp, self.url)
        else:
            lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lst.bind(("127.0.0.1", self._port))
            lst.listen(1)
            self._port = lst.getsockname()[1]
            self._listener = lst
        self.handler.reset()

    def _unplug(self) -> None:
        if self.kind == "pty":
            if self._master >= 0:
                os.unlink(self.url)
                os.close(self._master)
                os.close(self._slave)
                self._master = self._slave = -1
        else:
            self._drop_conn()
            if self._listener is not None:
                self._listener.close()
                self._listener = None

    def _drop_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        try:
            while self._serve_once():
                pass
        finally:
            self._unplug()

    def _serve_once(self) -> bool:
        watched: list = [self._wake_r]
        for src in (self._master if self._master >= 0 else None, self._listener, self._conn):
            if src is not None:
                watched.append(src)
        ready, _, _ = select.select(watched, [], [])
        if self._wake_r in ready:
            os.read(self._wake_r, 64)
            while not self._requests.empty():
                what, data, done = self._requests.get()
                if what == "send":
                    self._write(data)
                elif what == "emit":
                    self._send(data)
                elif what == "unplug":
                    self._unplug()
                elif what == "replug" and self._master < 0 and self._listener is None:
                    self._plug()
                done.set()
                if what == "stop":
                    return False
            return True
        if self._listener is not None and self._listener in ready:
            conn, _ = self._listener.accept()
            self._drop_conn()  # a serial server serves the latest host only
            self._conn = conn
            self.handler.reset()
        data = self._read(ready)
        if data:
            self._send(self.handler.received(data))
        return True

    def _read(self, ready: list) -> bytes:
        try:
            if self._master >= 0 and self._master in ready:
                return os.read(self._master, 4096)
            if self._conn is not None and self._conn in ready:
                data = self._conn.recv(4096)
                if not data:  # host closed its end; wait for the next connect
                    self._drop_conn()
                return data
        except BlockingIOError:
            return b""
        except OSError:
            if self.kind == "tcp":
                self._drop_conn()
        return b""

    def _send(self, answer: bytes) -> None:
        f = self.faults
        if not answer or f.mute:
            return
        data = f.garbage + answer
        if f.truncate_next > 0:
            f.truncate_next -= 1
            data = data[: len(f.garbage) + len(answer) // 2]
        step = f.chunk_size if f.chunk_size > 0 else len(data)
        for i in range(0, len(data), step):
            if i and f.chunk_delay and self._stopping.wait(f.chunk_delay):
                return
            if not self._write(data[i:i + step]):
                return
        self.answers += 1

    def _write(self, data: bytes) -> bool:
        """Write it all or drop it: a UART with nobody listening loses bytes, it never blocks."""
        try:
            if self.kind == "pty":
                if self._master < 0:
                    return False
                while data:
                    data = data[os.write(self._master, data):]
            else:
                if self._conn is None:
                    return False
                self._conn.sendall(data)
            return True
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.ECONNRESET) and self.kind == "tcp":
                self._drop_conn()
            return False
