"""One presentation of a health code → allow / deny / review, committed as an event.

The checks run in the order of docs/protocol/token.md §4; the signature is checked before anything
is decrypted, and the event (with the subject encrypted to the hub) is committed to the
outbox before the caller may open the gate.
"""
from __future__ import annotations

import json
import logging
import math
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from drivers.cards import CardRead
from drivers.idnumber import mask_id, mask_name
from terminal.config import Config
from terminal.core import reasons as R
from terminal.core import token as tok
from terminal.core import staff as st
from terminal.core.policy import ALLOW, DENY, REVIEW, HealthStatus, Policy, decide
from terminal.core.trust import MAX_TRUST_LIST_BYTES, EnvelopeError, TrustList, open_trust_list
from terminal.crypto.keyfiles import KeyFileError, load_data_keys
from terminal.ops.smallfile import read_small
from terminal.state.clock import ClockGuard
from terminal.state.store import Store

if TYPE_CHECKING:
    from terminal.hub.updates import DataKey

log = logging.getLogger(__name__)


class SetupError(RuntimeError):
    """The terminal cannot start deciding (no trust list, unreadable keys, ...): one line."""


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


BOOT_ID = _boot_id()


def uuid7() -> str:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, version 7, variant 10, 74 random bits."""
    ms = time.time_ns() // 1_000_000
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | secrets.randbits(12) << 64 \
        | 0b10 << 62 | secrets.randbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class Assessment:
    decision: str
    reason: str
    env: tok.Envelope | None   # parsed, whether or not it verified
    body: tok.Body | None      # only once signature, freshness and decryption passed


@dataclass
class Result:
    decision: str
    reason: str
    method: str
    status: int | None
    flags: int | None
    name: str | None      # masked
    id: str | None        # masked
    seq: int
    event_id: str
    latency_ms: float
    gate: str | None = None  # the event's: "opened", "fault" (an allow at a relay known down), None
    ref: str | None = None  # a staff override's: the id of the review event it answers

    def as_json(self) -> dict:
        d = asdict(self)
        d["status"] = tok.STATUS_NAMES[self.status] if self.status is not None else None
        return d


def load_trust(store: Store, cfg: Config) -> TrustList:
    """The newest good trust list: the config's file if it verifies and is newer, else the kept one."""
    roots = {k.kid(): k for k in cfg.root_keys}
    kept = None
    saved = store.signed_doc("trust")
    if saved is not None:
        try:
            kept = open_trust_list(saved[1], roots)
        except EnvelopeError as e:
            log.warning("trust: the kept trust list no longer verifies against the pinned roots (%s)", e)
    try:
        raw = read_small(cfg.trust_list, MAX_TRUST_LIST_BYTES)
        fresh = open_trust_list(raw, roots)
    except (OSError, EnvelopeError) as e:
        why = e.strerror if isinstance(e, OSError) else str(e)
        if kept is None:
            raise SetupError(f"trust list {cfg.trust_list}: {why}, and no earlier trust list is kept") from None
        log.warning("trust: %s: %s; keeping trust list seq %d", cfg.trust_list, why, kept.seq)
        return kept
    if kept is not None and fresh.seq <= kept.seq:
        if fresh.seq < kept.seq:
            log.warning("trust: %s has seq %d, older than the kept seq %d; rollback refused",
                        cfg.trust_list, fresh.seq, kept.seq)
        return kept
    store.save_signed_doc("trust", fresh.seq, raw)
    log.info("trust: trust list seq %d accepted (%d issuers)", fresh.seq, len(fresh.issuers))
    return fresh


# --- what may change under a running verifier: one value per kind, applied by Verifier.apply ---
@dataclass(frozen=True)
class TrustListUpdate:
    trust: TrustList              # a newer signed trust list (from the hub)


@dataclass(frozen=True)
class PolicyUpdate:
    venues: dict[str, dict]       # venue → fields, the hub's signed policy bundle
    staff: st.StaffList = st.NO_STAFF  # and its staff list


@dataclass(frozen=True)
class PendingReview:
    """The last presentation, decided ``review``: what a staff credential can confirm."""
    event_id: str
    seq: int
    at: float                     # Verifier.mono() at its commit


@dataclass(frozen=True)
class DataKeysUpdate:
    keys: dict[int, DataKey]      # the hub's data keys: its word wins for a dkid it names, not_after included


@dataclass(frozen=True)
class TimeBeacon:
    t: float                      # the hub's signed time


@dataclass(frozen=True)
class Reconfigure:
    cfg: Config                   # SIGHUP: the new configuration, its trust list and key file
    trust: TrustList
    file_keys: dict[int, bytes]


Update = Union[TrustListUpdate, PolicyUpdate, DataKeysUpdate, TimeBeacon, Reconfigure]


def gate_of(decision: str, relay_up: bool | None) -> str | None:
    """An event's ``gate`` (docs/protocol/hub.md): an allow is "opened" when the relay can be
    reached at the commit and "fault" when it cannot; deny, review and a terminal with no gate: None."""
    if decision != ALLOW or relay_up is None:
        return None
    return "opened" if relay_up else "fault"


class Verifier:
    def __init__(self, cfg: Config, store: Store, trust: TrustList, data_keys: dict[int, bytes],
                 clock: ClockGuard):
        self.cfg = cfg
        self.store = store
        self.trust = trust
        self._file_keys = dict(data_keys)
        self._hub_keys: dict[int, DataKey] = {}
        self.data_keys = data_keys
        # dkid → the last second its key may be used (the hub's not_after); the data-key file's have none
        self.data_key_not_after: dict[int, int] = {}
        self.clock = clock
        self.hub_policy: dict[str, dict] = {}  # venue → fields, from the hub's signed policy bundle
        self.staff = st.NO_STAFF      # the bundle's staff list (read by the card threads: replaced whole)
        # The review a staff credential may confirm: set and cleared by _commit on the deciding
        # thread only. Its age is measured on a monotonic clock (injectable for tests), so a wall
        # clock set back or forward neither stretches nor cuts the window.
        self.pending: PendingReview | None = None
        self.mono = time.monotonic

    def apply(self, update: Update) -> None:
        """The one way a running verifier changes. Call it between two presentations, from the
        thread that decides them; each attribute is replaced whole, never changed in place."""
        if isinstance(update, TrustListUpdate):
            self.trust = update.trust
        elif isinstance(update, PolicyUpdate):
            self.hub_policy, self.staff = update.venues, update.staff
        elif isinstance(update, DataKeysUpdate):
            self._hub_keys = update.keys
            self._merge_keys()
        elif isinstance(update, TimeBeacon):
            self.clock.beacon(update.t)
        elif isinstance(update, Reconfigure):
            self._file_keys = update.file_keys
            self.cfg, self.trust = update.cfg, update.trust
            self._merge_keys()

    def _merge_keys(self) -> None:
        """The data-key file's keys and the hub's. The hub's word wins for a dkid it names, its
        ``not_after`` included: past it the verifier refuses that dkid (``unknown_data_key``),
        whichever source also holds a key for it."""
        self.data_keys = {**self._file_keys, **{dkid: k.key for dkid, k in self._hub_keys.items()}}
        self.data_key_not_after = {dkid: k.not_after for dkid, k in self._hub_keys.items()}

    def policy(self, venue: str | None = None) -> Policy:
        """The venue's preset, this terminal's [policy] overrides, then the hub's signed bundle:
        the province's newest word wins over a local setting."""
        venue = venue or self.cfg.venue
        return self.cfg.policy(venue).with_overrides(self.hub_policy.get(venue, {}))

    @classmethod
    def open(cls, cfg: Config, state_dir: Path | None = None, now: float | None = None) -> "Verifier":
        """``now``: the fixed time the decisions will be made at (audits); the replay window is
        purged by it, not by the wall clock, else an audit of past codes could never see a replay."""
        store = Store(state_dir or cfg.state_dir)
        try:
            trust = load_trust(store, cfg)
            data_keys = load_data_keys(cfg.data_keys)
        except (SetupError, KeyFileError) as e:
            store.close()
            raise SetupError(str(e)) from None
        v = cls(cfg, store, trust, data_keys, ClockGuard(store, cfg.clock_tolerance))
        for key in [cfg.hub_key] + [i.public_key for i in trust.issuers.values()]:
            key.precompute()
        if now is None:
            now = v.clock.now()
        if now is not None:
            store.purge_nonces(now)
        return v

    def close(self) -> None:
        self.store.close()

    def assess(self, text: str, t: float | None, policy: Policy) -> Assessment:
        """Steps 1-5 and 7 of docs/protocol/token.md §4 (replay, step 6, needs the store: see verify)."""
        env: tok.Envelope | None = None
        try:
            env = tok.parse_text(text)
            issuer = self.trust.issuers.get(env.kid)
            if issuer is None:
                raise tok.TokenError(R.UNKNOWN_ISSUER)
            if not issuer.valid_at(env.iat):
                raise tok.TokenError(R.ISSUER_REVOKED)
            if not issuer.public_key.verify(env.signed, env.sig):
                raise tok.TokenError(R.BAD_SIGNATURE)
            if t is None:
                raise tok.TokenError(R.CLOCK_UNTRUSTED)
            if env.iat > t + policy.max_skew:
                raise tok.TokenError(R.NOT_YET_VALID)
            if t > env.iat + min(env.ttl, policy.max_age):
                raise tok.TokenError(R.EXPIRED)
            key = self.data_keys.get(env.dkid)
            if key is None or t > self.data_key_not_after.get(env.dkid, math.inf):
                raise tok.TokenError(R.UNKNOWN_DATA_KEY)
            body = tok.decrypt_body(env, key)
        except tok.TokenError as e:
            return Assessment(DENY, e.reason, env, None)
        decision, reason = decide(policy, HealthStatus(body.status, body.flags, body.nat_at, body.nat_result,
                                                       body.vax_doses), t)
        return Assessment(decision, reason, env, body)

    def verify(self, text: str, *, now: float | None = None, venue: str | None = None,
               started_ns: int | None = None, relay_up: bool | None = None) -> Result:
        """Decide one presentation of a QR ``text`` and commit its event before returning.

        ``now`` stands in for the terminal's trusted time (audits, tests): the clock guard is
        neither consulted nor advanced. ``relay_up``: whether the gate's relay can be reached
        now (None: no gate), which an allow's event records as its ``gate`` (:func:`gate_of`).
        """
        started_ns = started_ns or time.monotonic_ns()
        with self.store.presentation():
            policy = self.policy(venue)
            t = now if now is not None else self.clock.now()
            a = self.assess(text, t, policy)
            body = a.body
            nonce = None
            if body is not None:
                nonce = (a.env.nonce, a.env.iat + a.env.ttl + policy.max_skew)
            return self._commit("qr", a.decision, a.reason, t, now is not None, started_ns,
                                (body.status, body.flags) if body else (None, None),
                                _person(body.id_number, body.name) if body else None, nonce, relay_up)

    def verify_card(self, card: CardRead, health: HealthStatus | None, *, venue: str | None = None,
                    started_ns: int | None = None, relay_up: bool | None = None) -> Result:
        """Decide a card read: ``health`` is what the hub (or its cache) said, asked on the reader's
        thread, the venue policy decides; with no answer (None), policy ``offline_unknown`` with
        reason ``status_unavailable``."""
        started_ns = started_ns or time.monotonic_ns()
        with self.store.presentation():
            policy = self.policy(venue)
            t = self.clock.now()
            if t is None:
                # Neither a nucleic-acid age nor a cached answer can be judged without trusted time.
                health = None
                decision, reason = policy.offline_unknown, R.CLOCK_UNTRUSTED
            elif health is None:
                decision, reason = policy.offline_unknown, R.STATUS_UNAVAILABLE
            else:
                decision, reason = decide(policy, health, t)
            return self._commit(card.kind, decision, reason, t, False, started_ns,
                                (health.status, health.flags) if health else (None, None),
                                _person(card.id_number, card.name), None, relay_up)

    # --- staff override (docs/protocol/staff.md) ---------------------------------------------
    def staff_card(self, card: CardRead) -> st.Staff | None:
        """The staff member holding ``card``, if its number is on the hub's staff list."""
        if card.id_number in self.staff:
            return st.Staff(card.kind, id_number=card.id_number, name=card.name)
        return None

    def verify_staff_qr(self, text: str, *, started_ns: int | None = None, relay_up: bool | None = None) -> Result:
        """A staff QR code: the hub's signature and freshness (one code confirms one review: its
        nonce is used up as a health code's is), then :meth:`override`. A refused code is
        recorded like the rest: method ``staff``, decision ``deny``, the token reason that applies."""
        started_ns = started_ns or time.monotonic_ns()
        with self.store.presentation():
            policy = self.policy()
            t = self.clock.now()
            try:
                q = st.open_staff_qr(text, {self.cfg.hub_key.kid(): self.cfg.hub_key})
            except st.StaffError as e:
                log.warning("staff code refused: %s", e)
                return self._commit("staff", DENY, e.reason, t, False, started_ns, (None, None), None, None,
                                    relay_up)
            who = st.Staff("qr", sid=q.sid)
            why = st.freshness(q, t, policy.max_skew)
            if why is not None:
                return self._commit("staff", DENY, why, t, False, started_ns, (None, None), _staff(who), None,
                                    relay_up)
            return self._override(who, policy, t, started_ns,
                                  (b"staff:" + q.nonce, q.iat + q.ttl + policy.max_skew), relay_up)

    def override(self, by: st.Staff, *, started_ns: int | None = None, relay_up: bool | None = None) -> Result:
        """Staff ``by`` confirm the pending review: the one entry point for every way staff can
        (a staff card, a staff code, the hub's ``open_gate``). Commits the event and returns;
        the caller opens the gate on ``allow``. Call it on the deciding thread."""
        started_ns = started_ns or time.monotonic_ns()
        with self.store.presentation():
            return self._override(by, self.policy(), self.clock.now(), started_ns, None, relay_up)

    def _override(self, by: st.Staff, policy: Policy, t: float | None, started_ns: int,
                  nonce: tuple[bytes, int] | None, relay_up: bool | None) -> Result:
        pending, ref = self.pending, None
        if pending is None:
            decision, reason = DENY, R.NO_PENDING_REVIEW
        elif self.mono() - pending.at > policy.override_seconds:
            decision, reason, ref = DENY, R.REVIEW_EXPIRED, pending.event_id
        else:
            decision, reason, ref = ALLOW, R.STAFF_OVERRIDE, pending.event_id
        return self._commit("staff", decision, reason, t, False, started_ns, (None, None), _staff(by), nonce,
                            relay_up, ref=ref)

    def record_maintenance(self, reason: str) -> Result:
        """A maintenance action at the gate (a remote ``gate_test``, asked only of a relay that
        answers): an event of method ``maintenance``, decision allow, gate opened, no subject,
        committed before the relay may move."""
        started_ns = time.monotonic_ns()
        with self.store.presentation():
            return self._commit("maintenance", ALLOW, reason, self.clock.now(), False, started_ns, (None, None),
                                None, None, True)

    def unreadable(self, method: str, *, started_ns: int, relay_up: bool | None = None) -> Result:
        """Someone presented at ``method`` (docs/protocol/devices.md §4) and nothing could be read
        in time: a ``review`` event, reason ``unreadable``, committed like any decision."""
        with self.store.presentation():
            return self._commit(method, REVIEW, R.UNREADABLE, self.clock.now(), False, started_ns,
                                (None, None), None, None, relay_up)

    def _commit(self, method: str, decision: str, reason: str, t: float | None, fixed_time: bool,
                started_ns: int, status_flags: tuple, who: Subject | None,
                nonce: tuple[bytes, int] | None, relay_up: bool | None, *, ref: str | None = None) -> Result:
        """Commit the presentation's event (and its nonce) in one transaction; only then return.
        Then the pending review: a review is the one staff may confirm next; any other decision
        by a visitor ends the last one (its person is no longer the one at the gate), an override
        that opened the gate uses it up, a refused staff credential leaves it."""
        subject = None
        if who is not None:
            subject = self.cfg.hub_key.encrypt(json.dumps(who.subject, ensure_ascii=False).encode()).hex()
        event = {
            "id": uuid7(), "at": t if t is not None else time.time(), "boot_id": BOOT_ID,
            "mono_ns": started_ns, "method": method, "clock": "trusted" if t is not None else "untrusted",
            "status": status_flags[0], "flags": status_flags[1], "subject": subject, "ref": ref,
        }
        with self.store.write():
            # Step 6 runs inside the commit, so two presentations can never both use a nonce.
            if nonce is not None and not self.store.use_nonce(*nonce):
                decision, reason = DENY, R.REPLAYED
            latency_ms = (time.monotonic_ns() - started_ns) / 1e6
            event.update(decision=decision, reason=reason, latency_ms=round(latency_ms, 3),
                         gate=gate_of(decision, relay_up))
            seq = self.store.insert_event(event)
            if not fixed_time:
                self.clock.persist()
        if method != "staff":
            self.pending = PendingReview(event["id"], seq, self.mono()) if decision == REVIEW else None
        elif decision == ALLOW or reason == R.REVIEW_EXPIRED:
            self.pending = None
        result = Result(decision, reason, method, event["status"], event["flags"],
                        who.name if who else None, who.id if who else None,
                        seq, event["id"], event["latency_ms"], event["gate"], ref)
        log.info("seq=%d method=%s decision=%s reason=%s name=%s id=%s latency_ms=%.1f gate=%s%s",
                 seq, method, decision, reason, result.name, result.id, latency_ms, event["gate"],
                 f" ref={ref}" if ref else "")
        return result


@dataclass(frozen=True)
class Subject:
    """Who an event is about: ``subject`` is encrypted to the hub; ``name`` and ``id`` are the
    masked forms a screen or log may show."""
    subject: dict
    name: str | None
    id: str | None


def _person(id_number: str, name: str) -> Subject:
    return Subject({"id_number": id_number, "name": name}, mask_name(name), mask_id(id_number))


def _staff(by: st.Staff) -> Subject:
    if by.id_number is not None:
        return Subject(by.subject(), mask_name(by.name or ""), mask_id(by.id_number))
    return Subject(by.subject(), None, None)
