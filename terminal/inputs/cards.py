"""A card reader's thread: poll the reader → ask for the holder's status → one presentation.

The hub (or its cache) is asked here, on the reader's own thread: a slow hub (up to
``query_timeout``) must not hold up the camera's presentations queued behind this one, and the
decide thread never waits on the network — the presentation carries the answer.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from drivers.cards import CardError, CardReader, ReaderError
from drivers.serial_link import LinkDown
from terminal.core.cardstatus import StatusSource
from terminal.core.presentation import Presentation

log = logging.getLogger(__name__)


class CardInput:
    def __init__(self, kind: str, reader: CardReader, put: Callable[[Presentation], None], *,
                 now: Callable[[], float | None], status_source: StatusSource,
                 unread: Callable[[], None], devices, watchdog, metrics,
                 is_staff: Callable[[str], bool] = lambda id_number: False):
        """``now``: the terminal's trusted time (None while the clock is untrusted: nothing to ask
        then); ``unread``: tell the person a card could not be read (read it again); ``is_staff``:
        whether an ID number is on the staff list — a staff card confirms a review, so the hub
        is not asked about its holder's health."""
        self.name = kind
        self.reader = reader
        self._put = put
        self._now = now
        self._status_source = status_source
        self._unread = unread
        self._devices = devices
        self._watchdog = watchdog
        self._metrics = metrics
        self._is_staff = is_staff
        self.thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        self.thread = threading.Thread(target=self._run, args=(stop,), name=self.name, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.reader.close()

    def _run(self, stop: threading.Event) -> None:
        kind = self.name
        while not stop.is_set():
            try:
                card = self.reader.poll(0.5)
            except (LinkDown, ReaderError) as e:
                self._watchdog.progress(kind)
                self._devices.fail(kind, str(e))
                stop.wait(0.5)
                continue
            except CardError as e:
                self._watchdog.progress(kind)
                self._devices.ok(kind)
                log.warning("%s: card not read: %s", kind, e)
                self._unread()
                continue
            self._watchdog.progress(kind)
            self._devices.ok(kind)
            if card is not None:
                started = time.monotonic_ns()
                self._metrics.presented(kind)
                now = self._now()
                health = None
                if now and not self._is_staff(card.id_number):
                    try:
                        health = self._status_source.lookup(kind, card.id_number, card.name, now)
                    except Exception:  # costs this card its answer (offline_unknown), not the reader
                        log.exception("%s: card status lookup failed; deciding without an answer", kind)
                self._put(Presentation(kind, started, card=card, health=health))
