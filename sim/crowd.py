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
from dataclasses import dataclass, field, replace
from typing import Callable

import base45
import numpy as np

from drivers.camera import FrameSource
from sim.camera import LEVELS, Conditions, Presentation as CodeOnScreen, make_background, render
from sim.idcard_sam import SimCard
from sim.issuer import Issuer, Person, random_id_number, random_name
from sim.sscard_reader import VirtualSsCard
from terminal.core import guidance
from terminal.core import reasons as R
from terminal.core import token as tok
from terminal.core.policy import ALLOW, DENY, REVIEW, Policy

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
    presented_at: float | None = None  # seconds into the run: phone raised, card placed, code scanned
    decided_at: float | None = None    # ... the gate command or the panel
    answered: threading.Event = field(default_factory=threading.Event, repr=False)
    owner: "Visitor | None" = None  # whose code a passed-on code is
    override: bool = False        # sent to review, and staff then let them in with a staff code
    scanner: bool = False         # a QR visitor who holds the phone to the scan engine, not the camera


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
    # Staff let every other person sent to review in (at a hospital: a red or yellow code escorted
    # to the fever clinic); the rest they turn away. Chosen without the rng: a seed's crowd stays.
    for v in [v for v in people if v.method == "qr" and v.expect[0] == REVIEW][::2]:
        v.override = True
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


REACTION_S = 0.5   # from a hint on the screen to the phone moved


def heeded(cond: Conditions, hint: str, code_px: float) -> Conditions:
    """What a person does on ``hint``: a milder camera condition for the rest of their turn.
    Closer: the code about 1.4× as wide (a phone is not held nearer than ~300 px of code);
    brighter: the screen at full brightness; aim: phone held square, steady and centred,
    out of the ceiling light's reflection."""
    if hint == guidance.CLOSER:
        wide = min(code_px * 1.4, 300.0)
        return replace(cond, code_px=(wide * 0.95, wide))
    if hint == guidance.BRIGHTER:
        return replace(cond, brightness=(0.95, 1.0), code_px=(code_px, code_px))
    return replace(cond, code_px=(code_px, code_px), offset_px=min(cond.offset_px, 40.0),
                   tilt_deg=min(cond.tilt_deg, 8.0), roll_deg=min(cond.roll_deg, 15.0),
                   shake_px=min(cond.shake_px, 0.5), glare=(0.0, 0.0))


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
        self._reactions: list[tuple[float, str]] = []   # (due, hint), in the order heard
        self._next_t = 0.0
        self.frames = 0

    def show(self, text: str, frames: int) -> None:
        p = CodeOnScreen(text, self.cond, frames, np.random.default_rng(self._rng.integers(1 << 32)), self.size)
        with self._lock:
            self._current = (p, 0)
            self._reactions.clear()

    def clear(self) -> None:
        with self._lock:
            self._current = None
            self._reactions.clear()

    def react(self, hint: str, after: float = REACTION_S) -> None:
        """The person holding the phone heard ``hint`` (a ``terminal.core.guidance`` key) and, a
        moment later, does what it says. Must not block: called on the terminal's camera thread."""
        with self._lock:
            if self._current is not None:
                self._reactions.append((time.monotonic() + after, hint))

    def _react_now(self) -> None:
        """Under the lock: the phone of the reactions that are due, re-posed under milder conditions."""
        now = time.monotonic()
        while self._reactions and self._reactions[0][0] <= now and self._current is not None:
            _, hint = self._reactions.pop(0)
            p, i = self._current
            cond = heeded(p.cond, hint, p.base.code_px)
            self._current = (CodeOnScreen(p.text, cond, len(p.velocity),
                                          np.random.default_rng(self._rng.integers(1 << 32)), self.size), i)

    def open(self) -> None:
        self._next_t = time.monotonic()

    def read(self) -> np.ndarray:
        delay = self._next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_t = max(self._next_t + 1 / self.fps, time.monotonic() - 1 / self.fps)
        with self._lock:
            self._react_now()
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
    """The devices a visitor uses: the camera, the two virtual card readers, the scan engine. A
    visitor holds the phone up (or leaves the card on the reader) until the terminal answers — a
    decision, or the review for an unreadable code at 10 s — as people at a door do, for at most
    ``hold_s``; at the scan engine, as long as it takes it to send the code (``scan``)."""
    camera: ScenarioCamera
    sam: object          # sim.idcard_sam.VirtualSam
    ss: object           # sim.sscard_reader.VirtualSsReader
    clock: Callable[[], float] = time.monotonic   # the run's clock: presented_at is read from it
    hold_s: float = 15.0  # longest wait for an answer: well past the terminal's unreadable timeout
    linger_s: float = 0.3  # a look at the panel before taking the phone or card away
    leave_s: float = 0.5  # the lane is empty this long before the next person steps up
    stop: threading.Event = field(default_factory=threading.Event)
    staff_code: "Callable[[], str] | None" = None  # a fresh staff QR code, from the staff's app
    staff_s: float = 1.6  # how long staff hold their code up
    engine: object = None  # sim.scan_engine.VirtualScanEngine, at a door that has one
    scan_s: float = 1.0  # how long a phone is held to the scan engine (it answers in a blink)

    def present(self, v: Visitor) -> None:
        """``v`` shows the phone (``v.text``) or lays the card down, waits for the answer, leaves;
        staff then confirm the review of a visitor they mean to let in."""
        if v.kind == "passed_on_friend":
            self.stop.wait(2.0)  # the phone is handed back over the barrier: the owner has gone
        if v.scanner:
            self.scan(v)
        else:
            self.hold(v)
        if v.override and self.staff_code is not None:
            self.stop.wait(self.leave_s)  # the phone gone; staff come over and show theirs
            self.camera.show(self.staff_code(), int(self.staff_s * self.camera.fps))
            self.stop.wait(self.staff_s)
            self.camera.clear()
        self.stop.wait(self.leave_s)

    def hold(self, v: Visitor) -> None:
        """The phone under the camera or the card on its reader until the terminal answers."""
        if v.method == "qr":
            self.camera.show(v.text, int(self.hold_s * self.camera.fps))
        elif v.method == "id_card":
            self.sam.card = sim_card(v)
        else:
            self.ss.card = sim_card(v)
        v.presented_at = self.clock()   # the phone is up (drawing its screen is the simulator's time)
        end = time.monotonic() + self.hold_s
        while not v.answered.wait(0.05) and not self.stop.is_set() and time.monotonic() < end:
            pass
        self.stop.wait(self.linger_s)
        if v.method == "qr":
            self.camera.clear()
        elif v.method == "id_card":
            self.sam.card = None
        else:
            self.ss.card = None

    def scan(self, v: Visitor) -> None:
        """Hold ``v``'s phone to the scan engine: it decodes the code and sends it (again and
        again while it stays in view); ``v.presented_at`` is when it was first sent (the code
        scanned, after the engine's own decode time)."""
        held = time.monotonic()
        self.engine.show(v.text)
        self.stop.wait(self.scan_s)
        self.engine.clear()
        sent = self.engine.first_sent_after(v.text, held)
        if sent is not None:   # on the run's clock, like everyone's
            v.presented_at = sent - time.monotonic() + self.clock()


def override_report(visitors: list[Visitor], staff_results: list, echo) -> dict:
    """The demo's ``overrides``: each staff decision with its ``ref``, checked against the review
    event of the visitor staff meant to let in."""
    reviews = {v.result.event_id: v for v in visitors if v.result is not None and v.result.decision == REVIEW}
    meant = [v.n for v in visitors if v.override and v.result is not None and v.result.decision == REVIEW]
    items = [{"seq": r.seq, "decision": r.decision, "reason": r.reason, "ref": r.ref,
              "visitor": reviews[r.ref].n if r.ref in reviews else None} for r in staff_results]
    opened = [i for i in items if i["decision"] == ALLOW]
    res = {"overrides": {"count": len(opened), "meant": len(meant), "each": items,
                         "right_person": sorted(i["visitor"] for i in opened if i["visitor"] is not None) == meant}}
    echo(f"staff overrides {len(opened)} of {len(meant)} meant"
         + "".join(f"; #{i['visitor']} ref {i['ref']}" for i in opened))
    return res
