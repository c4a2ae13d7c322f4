"""What counts as one presentation at the camera.

A phone held under the camera shows the same code in many frames — and a few frames in the
middle may not decode (blur, a hand moving). All of that is one presentation, decided once.
The code counts as gone once no frame has shown it for ``gap`` seconds; shown again after
that, it is a new presentation, which the verifier then turns away as ``replayed``.
"""
from __future__ import annotations


class QrPresentations:
    def __init__(self, gap: float = 1.5):
        self.gap = gap
        self._last_seen: dict[str, float] = {}  # code text → frame time it was last seen

    def observe(self, texts: list[str], ts: float) -> list[str]:
        """Texts decoded from the frame taken at ``ts``: returns those that start a presentation."""
        for text, seen in list(self._last_seen.items()):
            if ts - seen > self.gap:
                del self._last_seen[text]
        new = []
        for text in texts:
            text = text.strip()
            if not text:
                continue
            if text not in self._last_seen and text not in new:
                new.append(text)
            self._last_seen[text] = max(ts, self._last_seen.get(text, ts))
        return new

    @property
    def in_view(self) -> int:
        return len(self._last_seen)
