"""A crowd at the door, with ground truth: who arrives, what they show, what should happen.

People arrive at random (Poisson, ``rate`` per minute) and use the one lane in turn: a
phone held under the virtual camera for a second or two, or a card laid on a virtual
reader. Each person carries what the door *should* decide, written from the venue's policy
table and the spec — not from the terminal's code — so the demo's ``agreement`` is a real
check: screenshots, forgeries and passed-on codes must never get in.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import base45
import numpy as np

from drivers.camera import FrameSource
from sim.camera import LEVELS, Presentation as CodeOnScreen, make_background, render
from sim.idcard_sam import SimCard
from sim.issuer import Issuer, Person, random_id_number, random_name
from sim.sscard_reader import VirtualSsCard
from terminal.core import reasons as R
from terminal.core import token as tok
from terminal.core.policy import ALLOW, DENY, Policy

# kind → weight in the crowd
KINDS = {
    "green": 34, "screenshot": 8, "forged": 5, "red": 4, "yellow": 5, "star": 4,
    "nat_expired": 5, "nat_missing": 4, "passed_on": 6, "id_card": 7, "ss_card": 5,
}
CARD_KINDS = ("id_card", "ss_card")


@dataclass
class Visitor:
    n: int
    kind: str
    method: str                   # qr | id_card | ss_card
    name: str
    id_number: str
    expect: tuple[str, str]       # (decision, reason)
    text: str | None = None       # the code shown, for QR visitors
    arrive_at: float = 0.0        # seconds into the run
    result: object = None         # terminal.verifier.Result once decided
    decided_at: float | None = None
    owner: "Visitor | None" = None  # whose code a passed-on code is
    scanner: bool = False         # a QR visitor who holds the phone to the scan engine, not the camera
    presented_at: float | None = None  # scanner: monotonic time the engine sent the code


def expected(kind: str, policy: Policy, hub_answers_cards: bool) -> tuple[str, str]:
    """What the door should decide for ``kind`` under the venue's policy (docs/protocol/policy.md)."""
    def rule(decision: str, reason: str) -> tuple[str, str]:
        return (decision, reason) if decision != ALLOW else (ALLOW, R.OK)

    if kind in ("green", "passed_on"):
        return ALLOW, R.OK
    if kind == "screenshot":
        return DENY, R.EXPIRED
    if kind == "forged":
        return DENY, R.BAD_SIGNATURE
    if kind == "red":
        return rule(policy.red, R.RED_CODE)
    if kind == "yellow":
        return rule(policy.yellow, R.YELLOW_CODE)
    if kind == "star":
        return rule(policy.star, R.STAR_CODE)
    if kind == "nat_expired":
        return rule(DENY if policy.nat_hours else ALLOW, R.NAT_EXPIRED)
    if kind == "nat_missing":
        return rule(DENY if policy.nat_hours else ALLOW, R.NAT_MISSING)
    if kind in CARD_KINDS:
        return (ALLOW, R.OK) if hub_answers_cards else (policy.offline_unknown, R.STATUS_UNAVAILABLE)
    raise ValueError(kind)


def make_visitors(n: int, rate_per_min: float, policy: Policy, issuer: Issuer, rng: random.Random,
                  hub_answers_cards: bool = False) -> list[Visitor]:
    """``n`` people with arrival times; a passed-on code brings a friend who shows it later."""
    kinds = list(KINDS)
    weights = [KINDS[k] for k in kinds]
    people: list[Visitor] = []
    t = 1.0
    while len(people) < n:
        kind = rng.choices(kinds, weights)[0]
        method = kind if kind in CARD_KINDS else "qr"
        v = Visitor(len(people) + 1, kind, method, random_name(rng), random_id_number(rng),
                    expected(kind, policy, hub_answers_cards), arrive_at=t)
        people.append(v)
        if kind == "passed_on" and len(people) < n:
            friend = Visitor(len(people) + 1, "passed_on_friend", "qr", v.name, v.id_number,
                             (DENY, R.REPLAYED), arrive_at=t + rng.uniform(4, 8))
            friend.owner = v
            people.append(friend)
        t += rng.expovariate(rate_per_min / 60.0)
    people.sort(key=lambda v: v.arrive_at)
    for i, v in enumerate(people, 1):
        v.n = i
    return people


def use_scanner(visitors: list[Visitor], rng: random.Random, share: float = 0.5) -> None:
    """At a door with both, about ``share`` of the people showing a code hold it to the scan
    engine; the rest to the camera."""
    for v in visitors:
        if v.method == "qr":
            v.scanner = rng.random() < share


def code_for(v: Visitor, issuer: Issuer, nat_hours: int) -> str:
    """The text on ``v``'s phone at the moment they show it."""
    now = int(time.time())
    p = Person(name=v.name, id_number=v.id_number)
    if v.kind == "red":
        p.status = "red"
    elif v.kind == "yellow":
        p.status = "yellow"
    elif v.kind == "star":
        p.star = True
    elif v.kind == "nat_expired":
        p.nat_hours_ago = (nat_hours or 72) + 10
    elif v.kind == "nat_missing":
        p.nat = "none"
    if v.kind == "passed_on_friend":
        return v.owner.text
    if v.kind == "screenshot":
        return issuer.issue(p, iat=now - random.randint(120, 3600))
    text = issuer.issue(p, iat=now)
    if v.kind == "forged":  # someone edited the encrypted body: one byte changed
        raw = bytearray(base45.b45decode(text[len(tok.PREFIX):]))
        raw[tok.HEADER_LEN + random.randrange(16)] ^= 1 << random.randrange(8)
        text = tok.PREFIX + base45.b45encode(bytes(raw)).decode()
    return text


def resident_card(name: str, id_number: str) -> SimCard:
    """A resident ID card whose fields agree with the number (birth date, sex by the sequence)."""
    birth = id_number[6:14]
    sex = "1" if int(id_number[16]) % 2 else "2"
    # issued in 2021; a card issued past 46 never expires (长期), else 20 years
    valid_to = "长期" if int(birth[:4]) < 1975 else "20410301"
    return SimCard(name=name, id_number=id_number, birth=birth, sex=sex, valid_from="20210301", valid_to=valid_to)


def sim_card(v: Visitor):
    if v.method == "id_card":
        return resident_card(v.name, v.id_number)
    return VirtualSsCard(card_number=f"A{random.randint(0, 99999999):08d}", ss_number=v.id_number,
                         name=v.name)


class ScenarioCamera(FrameSource):
    """The virtual camera, driven live: ``show(text)`` puts a phone under it, ``clear()``
    takes it away. Frames come at ``fps``; empty frames in between show the background."""

    def __init__(self, *, level: str = "mild", fps: float = 30.0, seed: int = 0,
                 size: tuple[int, int] = (640, 480)):
        self.name = "sim:crowd"
        self.cond = LEVELS[level]
        self.fps = fps
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._background = make_background(np.random.default_rng([seed, 0xB6]), size)
        self._lock = threading.Lock()
        self._current: tuple[CodeOnScreen, int] | None = None
        self._next_t = 0.0
        self.frames = 0

    def show(self, text: str, frames: int) -> None:
        p = CodeOnScreen(text, self.cond, frames, np.random.default_rng(self._rng.integers(1 << 32)), self.size)
        with self._lock:
            self._current = (p, 0)

    def clear(self) -> None:
        with self._lock:
            self._current = None

    def open(self) -> None:
        self._next_t = time.monotonic()

    def read(self) -> np.ndarray:
        delay = self._next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_t = max(self._next_t + 1 / self.fps, time.monotonic() - 1 / self.fps)
        with self._lock:
            cur = self._current
            if cur is not None:
                p, i = cur
                i = min(i, len(p.velocity) - 1)
                self._current = (p, i + 1)
        rng = np.random.default_rng(self.frames)
        self.frames += 1
        if cur is None:
            return render(self._background, None, None, (0, 0), (0, 0, 0, 0), 0, self.cond, 0, rng)
        return render(self._background, p.screen, p.pose(i), tuple(p.velocity[i]), p.glare, p.moire,
                      self.cond, p.defocus, rng)

    def close(self) -> None:
        pass


@dataclass
class Lane:
    """The devices a visitor uses: the camera, the two virtual card readers, the scan engine."""
    camera: ScenarioCamera
    sam: object          # sim.idcard_sam.VirtualSam
    ss: object           # sim.sscard_reader.VirtualSsReader
    show_s: float = 1.6  # how long a phone is held up / a card lies on the reader
    leave_s: float = 0.5  # the lane is empty this long before the next person steps up
    stop: threading.Event = field(default_factory=threading.Event)
    engine: object = None  # sim.scan_engine.VirtualScanEngine, at a door that has one
    scan_s: float = 1.0  # how long a phone is held to the scan engine (it answers in a blink)

    def present(self, v: Visitor) -> None:
        """Hold ``v``'s phone (``v.text``) or card to the terminal for ``show_s``, then leave."""
        if v.kind == "passed_on_friend":
            self.stop.wait(2.0)  # the phone is handed back over the barrier: the owner has gone
        if v.scanner:
            self.scan(v)
        elif v.method == "qr":
            self.camera.show(v.text, int(self.show_s * self.camera.fps))
            self.stop.wait(self.show_s)
            self.camera.clear()
        elif v.method == "id_card":
            self.sam.card = sim_card(v)
            self.stop.wait(self.show_s)
            self.sam.card = None
        else:
            self.ss.card = sim_card(v)
            self.stop.wait(self.show_s)
            self.ss.card = None
        self.stop.wait(self.leave_s)

    def scan(self, v: Visitor) -> None:
        """Hold ``v``'s phone to the scan engine: it decodes the code and sends it (again and
        again while it stays in view); ``v.presented_at`` is when it was first sent."""
        held = time.monotonic()
        self.engine.show(v.text)
        self.stop.wait(self.scan_s)
        self.engine.clear()
        v.presented_at = self.engine.first_sent_after(v.text, held)
