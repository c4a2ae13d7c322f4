"""What counts as one presentation at the camera.

A phone held under the camera shows the same code in many frames — and a few frames in the
middle may not decode (blur, a hand moving). All of that is one presentation, decided once.
The code counts as gone once no frame has shown it for ``gap`` seconds; shown again after
that, it is a new presentation, which the verifier then turns away as ``replayed``.

A health code (``SDHC…``) or a staff code (``SDST…``) is decided on the first frame that shows
it: a false decode cannot carry a valid signature. Anything else must be seen in two frames first: decoders do now and
then read a few digits out of moiré or noise (seen: "2576" in a 4-minute demo), and that must
not flash 禁止通行 at the person in front of the camera.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from terminal.core.staff import is_staff_qr

if TYPE_CHECKING:
    from drivers.cards import CardRead
    from terminal.core.policy import HealthStatus
    from terminal.core.staff import Staff


@dataclass(frozen=True)
class Presentation:
    """One person at the door, as an input hands it to the decide thread.

    ``method`` is the event's (docs/protocol/hub.md): a QR code is ``qr`` whichever input read
    it; ``source`` says which did, for the screen's and the demo's statistics — never sent."""
    method: str                 # "qr" | "id_card" | "ss_card" | "staff"
    started_ns: int             # monotonic ns of the frame, of the scan engine's line, or of the card read's completion
                                # (unreadable: when presenting began)
    text: str | None = None
    card: CardRead | None = None
    health: HealthStatus | None = None  # a card's status, asked on the reader's thread
    source: str | None = None   # a QR code's input: "camera" | "scanner"
    staff: Staff | None = None  # "staff": who confirms the pending review (the hub's open_gate)
    unreadable: bool = False    # presented, nothing read in time: a review (terminal.core.guidance)


class QrPresentations:
    def __init__(self, gap: float = 1.5):
        self.gap = gap
        self._last_seen: dict[str, float] = {}  # code text → frame time it was last seen
        self._sightings: dict[str, int] = {}    # frames that showed it, while in view
        self._decided: set[str] = set()          # in view and already handed on

    def observe(self, texts: list[str], ts: float) -> list[str]:
        """Texts decoded from the frame taken at ``ts``: returns those that start a presentation."""
        for text, seen in list(self._last_seen.items()):
            if ts - seen > self.gap:
                del self._last_seen[text], self._sightings[text]
                self._decided.discard(text)
        new = []
        for text in dict.fromkeys(t.strip() for t in texts):
            if not text:
                continue
            self._last_seen[text] = max(ts, self._last_seen.get(text, ts))
            self._sightings[text] = self._sightings.get(text, 0) + 1
            # a staff code is signed too: noise cannot forge one either
            needed = 1 if text.startswith("SDHC") or is_staff_qr(text) else 2
            if text not in self._decided and self._sightings[text] >= needed:
                self._decided.add(text)
                new.append(text)
        return new

    @property
    def in_view(self) -> int:
        """Codes read within the last ``gap`` seconds: while any is, the person is answered."""
        return len(self._last_seen)
