"""systemd integration: the notify protocol, a watchdog that pings only while the daemon makes
progress, and the secrets systemd hands over with ``LoadCredential=``.

Notify wire format (sd_notify(3)): one AF_UNIX datagram to ``$NOTIFY_SOCKET`` per message,
newline-separated assignments::

    READY=1            store, trust state and every configured device are open
    STATUS=<one line>  what ``systemctl status`` shows
    WATCHDOG=1         alive; none within WatchdogSec= and systemd aborts and restarts us
    STOPPING=1         on the way out

A ``$NOTIFY_SOCKET`` starting with ``@`` names an abstract socket (a leading NUL byte).
Without ``$NOTIFY_SOCKET`` (a shell, a test, the simulator) every call is a no-op, and a
send that fails is logged once, never raised: telling systemd must not stop a gate.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr: str | None = None
        if addr.startswith("@"):
            self._addr = "\0" + addr[1:]
        elif addr.startswith("/"):
            self._addr = addr
        elif addr:
            log.warning("NOTIFY_SOCKET %r is not an AF_UNIX socket; not notifying systemd", addr)
        self._interval = _watchdog_interval(env)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def send(self, *assignments: str) -> bool:
        """Send one message; True if systemd's socket took it."""
        if self._addr is None:
            return False
        data = "\n".join(assignments).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # sendto each time rather than connect once: the address outlives any one socket
                self._sock.sendto(data, self._addr)
            except OSError as e:
                if not self._warned:
                    log.warning("cannot notify systemd at %s: %s", self._addr.replace("\0", "@"),
                                e.strerror or e)
                    self._warned = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([_status(status)] if status else []))

    def status(self, text: str) -> bool:
        return self.send(_status(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([_status(status)] if status else []))

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of WatchdogSec=), or None when no watchdog is set for us."""
        return self._interval

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line, whatever the caller built


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    # sd_watchdog_enabled(3): WATCHDOG_USEC, and WATCHDOG_PID if set must be us
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
        pid = env.get("WATCHDOG_PID")
        if pid is not None and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Watchdog:
    """WATCHDOG=1 only while every watched loop shows progress.

    Each loop the daemon relies on is watched by name and calls :meth:`progress` whenever it
    gets somewhere — a frame arrived (or the camera reported an error its driver is retrying),
    a reader poll returned, a store write committed, the decide loop went round. A loop that
    stops reporting for ``stall_after`` seconds is wedged (a driver call that never returns, a
    store that no longer answers): pings stop, and systemd restarts the service after
    WatchdogSec=. :meth:`tick` is called from the decide loop itself, so a wedged decide loop
    stops the pings too — there is deliberately no separate pinging thread.
    """

    def __init__(self, notifier: Notifier, *, stall_after: float = 20.0,
                 clock: Callable[[], float] = time.monotonic):
        self._notifier = notifier
        self._stall_after = stall_after
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._last_ping = float("-inf")
        self._reported: tuple[str, ...] = ()
        # Fed: a WATCHDOG=1 went out (or, with no watchdog asked for, a tick found every loop
        # progressing): one of a new release's health checks (terminal/update/health.py).
        self.fed = False

    def watch(self, name: str) -> None:
        """Start watching a loop (counts as progress now)."""
        self.progress(name)

    def unwatch(self, name: str) -> None:
        """A loop that stops on purpose (shutdown) is no longer expected to progress."""
        with self._lock:
            self._last.pop(name, None)

    def progress(self, name: str) -> None:
        t = self._clock()
        with self._lock:
            self._last[name] = t

    def stalled(self) -> list[str]:
        now = self._clock()
        with self._lock:
            return sorted(n for n, t in self._last.items() if now - t > self._stall_after)

    def tick(self) -> bool:
        """Ping systemd if one is due and nothing is stalled; True if it pinged."""
        stuck = tuple(self.stalled())
        if stuck != self._reported:
            if stuck:
                log.error("watchdog: no progress for %.0f s in %s; not pinging systemd",
                          self._stall_after, ", ".join(stuck))
                self._notifier.status(f"stalled: {', '.join(stuck)}")
            else:
                log.warning("watchdog: %s progressing again", ", ".join(self._reported))
            self._reported = stuck
        interval = self._notifier.watchdog_interval()
        now = self._clock()
        if not stuck and interval is None:
            self.fed = True
        if stuck or interval is None or now - self._last_ping < interval:
            return False
        if self._notifier.watchdog():
            self._last_ping = now
            self.fed = True
            return True
        return False


# --- credentials (systemd.exec LoadCredential=) ------------------------------------
# The unit passes each secret as LoadCredential=<id>:/etc/gate-terminal/<file>; systemd (as
# root) copies it into a private, non-swappable $CREDENTIALS_DIRECTORY that only this service
# can read. The id is the file's base name, so the config may keep naming the /etc path and
# run the same outside systemd. Credential ids the shipped unit passes, by config key:
CREDENTIALS = {"terminal.device_key": "device.pem", "hub.key": "client.key",
               "trust.data_keys": "data_keys.json"}


def credential_path(name: str, configured: Path | None,
                    env: Mapping[str, str] | None = None) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/name`` if systemd passed that credential, else ``configured``."""
    env = os.environ if env is None else env
    directory = env.get("CREDENTIALS_DIRECTORY")
    if directory:
        candidate = Path(directory) / name
        if candidate.is_file():
            return candidate
    return configured


def is_credential(path: Path, env: Mapping[str, str] | None = None) -> bool:
    """True for a file inside ``$CREDENTIALS_DIRECTORY``.

    systemd grants the service user read access to a credential with an ACL, and the ACL
    mask shows as group bits (mode 0440): the 0600 rule of keyfiles must not refuse it —
    the directory itself is private to this service.
    """
    env = os.environ if env is None else env
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return False
    try:
        return Path(path).resolve().parent == Path(directory).resolve()
    except OSError:
        return False
