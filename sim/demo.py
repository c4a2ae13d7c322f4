"""``gate-terminal sim demo``: the whole terminal on a laptop.

The real daemon runs against simulated hardware that speaks the real bytes: the virtual
SAM module and social-security reader on pseudo-terminals (read by the shipping drivers
through pyserial), the virtual LCUS relay on another, the virtual camera rendering each
visitor's phone, and PNG panels. A crowd (:mod:`sim.crowd`) walks through; every decision
is printed as it happens and checked against the visitor's ground truth.
"""
from __future__ import annotations

import json
import math
import random
import secrets
import shutil
import statistics
import threading
import time
import tomllib
from collections import Counter
from pathlib import Path

from drivers.camera import FrameGrabber
from sim.crowd import Lane, ScenarioCamera, code_for, make_visitors, override_report, use_scanner
from sim.devkeys import write_key_set
from sim.idcard_sam import VirtualSam
from sim.issuer import Issuer, staff_code
from sim.relay import VirtualRelay
from sim.scan_engine import VirtualScanEngine
from sim.serial_endpoint import SerialEndpoint
from sim.sscard_reader import VirtualSsReader
from terminal import config as cfgmod
from terminal.daemon import Daemon


# The marker a demo leaves in --out, and what it makes there: a later demo removes only these,
# and only where the marker is. --out . in a checkout or a home directory must lose nothing.
MARKER = ".gate-terminal-demo"
OWN = ("keys", "screens", "prompts", "broker", "hub.db", "hub.db-wal", "hub.db-shm", "terminal.toml")


class NotDemoDir(FileExistsError):
    """--out names something the demo did not make: it is left exactly as it is."""


def claim_out(out: Path) -> None:
    """Make ``out`` the demo's: new, empty, or an earlier demo's (whose own entries go)."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise NotDemoDir(f"--out {out}: not a directory")
        if not (out / MARKER).is_file() and any(out.iterdir()):
            raise NotDemoDir(f"--out {out}: not empty and not made by a demo (no {MARKER}); "
                             "name a new or empty directory")
        for name in OWN:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by gate-terminal sim demo, which replaces its own files here\n")


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1)]


def device_sections(screens: Path, ports: dict[str, str], *, camera: str | None = None,
                    pulse_ms: int = 800, result_seconds: float = 1.2, prompts: Path | None = None) -> str:
    """The simulated devices as config sections (TOML text); ``prompts``: the simulator's
    speaker records every prompt there."""
    text = f'\n[camera]\nsource = "{camera}"\nfps = 15\n' if camera else ""
    if prompts is not None:
        text += f'\n[audio]\nkind = "wavfile"\ndevice = "{prompts}"\n'
    if ports.get("scanner"):
        text += f'\n[scanner]\nport = "{ports["scanner"]}"\nbaud = 115200\n'
    return text + f"""
[id_card]
port = "{ports['id_card']}"

[ss_card]
port = "{ports['ss_card']}"

[relay]
kind = "lcus"
port = "{ports['relay']}"
pulse_ms = {pulse_ms}

[screen]
kind = "png"
path = "{screens}"
width = 800
height = 480
result_seconds = {result_seconds}
"""


def write_config(keys: Path, screens: Path, venue: str, ports: dict[str, str], **devices) -> Path:
    """The key set's config with the simulated devices, written as ``terminal.toml`` beside the
    keys (its relative paths name them); ``devices`` as for :func:`device_sections`."""
    text = (keys / "config.toml").read_text().replace('venue = "mall"', f'venue = "{venue}"')
    path = keys / "terminal.toml"
    path.write_text(text + device_sections(screens, ports, **devices))
    return path


def demo_config(base: Path, venue: str, screens: Path, ports: dict[str, str], **devices) -> cfgmod.Config:
    """``base``'s settings (relative paths from its directory) at ``venue``, with the simulated
    devices in place of any device sections it has: a real terminal's config may name a camera
    and a screen, and two [camera] tables are no TOML."""
    raw = tomllib.loads(base.read_text())
    for section in cfgmod.DEVICE_SECTIONS:
        raw.pop(section, None)
    raw.update(tomllib.loads(device_sections(screens, ports, **devices)))
    raw["terminal"] = {**raw.get("terminal", {}), "venue": venue}
    return cfgmod.from_dict(raw, base)


def run_demo(*, out: Path, duration: float, venue: str, rate: float, level: str = "mild",
             seed: int | None = None, report: Path | None = None, hub: bool = False,
             config: Path | None = None, scanner: bool = False, echo=print) -> dict:
    """The crowd demo. ``hub``: also a Mosquitto and the hub simulator, which answers for the
    card holders; ``config``: a terminal config naming an outside broker and hub (its directory
    must hold the issuer key and data keys of a ``sim keys`` set); the demo starts no hub then.
    ``scanner``: the door has a scan engine too, and about half the people showing a code use it."""
    rng = random.Random(seed)
    claim_out(out)
    keys = config.parent if config is not None else out / "keys"
    if config is None:
        write_key_set(keys, venue=venue)
    issuer = Issuer.from_dir(keys)
    sam, ss, relay = VirtualSam(read_delay=(0.1, 0.3)), VirtualSsReader(), VirtualRelay()
    endpoints = {"id_card": SerialEndpoint(sam), "ss_card": SerialEndpoint(ss), "relay": SerialEndpoint(relay)}
    broker = hubsim = None
    engine = scan_engine() if scanner else None
    try:
        for ep in endpoints.values():
            ep.start()
        ports = {k: ep.url for k, ep in endpoints.items()}
        if engine is not None:
            ports["scanner"] = engine.start().url
        cfg = demo_config(config or keys / "config.toml", venue, out / "screens", ports, prompts=out / "prompts")
        policy = cfg.policy()
        visitors = make_visitors(max(1, round(duration * rate / 60)), rate, policy, issuer, rng,
                                 hub_answers_cards=hub)
        if engine is not None:
            use_scanner(visitors, rng)
        if hub:
            cfg, broker, hubsim = start_hub(cfg, keys, out, visitors)
        return _run(cfg, out, level, rng, issuer, visitors, sam, ss, relay, report, echo, hubsim, engine)
    finally:
        if engine is not None:
            engine.stop()
        if hubsim is not None:
            hubsim.stop()
        if broker is not None:
            broker.stop()
        for ep in endpoints.values():
            ep.stop()


def scan_engine() -> VirtualScanEngine:
    """The door's scan engine, as shipped: CR after each code, resent every 0.5 s while in view,
    0.1 s to decode (its own time, before the code is sent)."""
    return VirtualScanEngine(suffix="cr", repeat=0.5, decode_delay=0.1)


def start_hub(cfg, keys: Path, out: Path, visitors):
    """A Mosquitto with TLS and the hub simulator, and the terminal's config pointed at them."""
    from sim.broker import Broker
    from sim.hub import HubSim
    from terminal.crypto.keyfiles import load_private_key

    broker = Broker(workdir=out / "broker").start()
    cert, key = broker.client_cert(cfg.terminal_id)
    cfg = cfg.with_hub(broker=broker.url, ca=broker.ca, cert=cert, key=key)
    now = time.time()
    people = {v.id_number: {"name": v.name, "status": 0, "flags": 0, "nat_at": int(now - 12 * 3600),
                            "nat_result": 1, "vax_doses": 3, "valid_until": int(now + 86400)}
              for v in visitors if v.method != "qr"}
    hub_cert, hub_key_path = broker.client_cert("hub")
    hubsim = HubSim(broker.url, broker.ca, hub_cert, hub_key_path, hub_key=load_private_key(keys / "hub.pem"),
                    root_key=load_private_key(keys / "root.pem"), db_path=out / "hub.db",
                    terminals={cfg.terminal_id: load_private_key(keys / "device.pem").public_key},
                    people=people, group=secrets.token_hex(12), start_seq=1).start()
    hubsim.publish_trust((keys / "trust.envelope.json").read_bytes())
    if not hubsim.wait_connected(15):
        raise RuntimeError("the hub simulator could not connect to its broker")
    return cfg, broker, hubsim


def _run(cfg, out, level, rng, issuer, visitors, sam, ss, relay, report, echo, hubsim, engine=None) -> dict:
    policy = cfg.policy()
    # 15 fps, as the config says: rendering a frame costs the simulator more than the terminal's
    # decoding, and frames the terminal never reads would only take its CPU.
    camera = ScenarioCamera(level=level, fps=15, seed=rng.randrange(1 << 30))
    by_text, by_id = {}, {}
    lock = threading.Lock()
    lane = Lane(camera, sam, ss, clock=lambda: time.monotonic() - t0, engine=engine, staff_code=_staff_app(cfg))
    hints: Counter[str] = Counter()
    staff = []

    def on_guidance(key):
        hints[key] += 1
        camera.react(key)

    def on_result(p, r):
        if r.method == "staff":  # staff confirming a review: not a visitor of the crowd
            staff.append(r)
            echo(f"{time.monotonic() - t0:7.1f}s  staff {p.method:<7} {r.decision:<6} {r.reason:<18} ref {r.ref}")
            return
        with lock:
            if p.unreadable:  # nothing was read: the last one to present there before the terminal saw them
                since = p.started_ns / 1e9 - t0
                there = [u for u in visitors if u.method == p.method and not u.scanner
                         and u.presented_at is not None and u.presented_at <= since]
                v = there[-1] if there else None
            elif p.method == "qr":
                v = by_text.get(p.text)
            else:
                v = by_id.get((p.method, p.card.id_number))
            if v is None or v.result is not None:
                what = repr(p.text[:24]) if p.text else ""
                echo(f"{time.monotonic() - t0:7.1f}s  ?   {p.method:<7} {r.decision:<6} {r.reason:<18} "
                     f"(nobody expected this presentation {what})")
                return
            v.result, v.decided_at = r, time.monotonic() - t0
        v.answered.set()
        ok = (r.decision, r.reason) == v.expect
        mark = "ok" if ok else f"WRONG, expected {v.expect[0]}/{v.expect[1]}"
        echo(f"{v.decided_at:7.1f}s #{v.n:<3} {p.method:<7} {r.decision:<6} {r.reason:<18} "
             f"{r.name or '-':<5} {r.latency_ms:7.1f} ms  {v.kind:<17} {mark}")

    daemon = Daemon(cfg, camera=FrameGrabber(camera), on_result=on_result, on_guidance=on_guidance)
    daemon.start()
    t0 = time.monotonic()  # arrivals count from here, with the terminal up
    hub_note = f", hub {cfg.hub.broker}" if cfg.hub.broker else ", no hub"
    echo(f"demo: {len(visitors)} visitors at a {cfg.venue} ({cfg.terminal_id}), arriving at about "
         f"{arrivals_per_min(visitors):.0f}/min (one lane: who comes while it is busy waits), "
         f"camera '{level}'{hub_note}; output in {out}")
    echo(f"{'time':>8} {'who':<4} {'method':<7} {'result':<6} {'reason':<18} {'name':<5} {'latency':>10}  kind")
    synced = None
    try:
        for v in visitors:
            wait = v.arrive_at - (time.monotonic() - t0)
            if wait > 0:
                time.sleep(wait)
            if v.method == "qr":
                v.text = code_for(v, issuer, policy.nat_hours)
            with lock:  # the newest holder of a code or card is who the next decision is for
                if v.method == "qr":
                    by_text[v.text] = v
                else:
                    by_id[(v.method, v.id_number)] = v
            lane.present(v)
        time.sleep(2.5)  # the last decisions and panels
        if daemon.hub is not None:  # give the outbox a moment to reach the hub
            end = time.monotonic() + 15
            while time.monotonic() < end and daemon.verifier.store.outbox_depth():
                time.sleep(0.2)
            synced = {"outbox_depth": daemon.verifier.store.outbox_depth(),
                      "hub_events": len(hubsim.stored_seqs(cfg.terminal_id)) if hubsim else None}
    finally:
        daemon.stop()
    res = summarize(visitors, relay, out, echo, time.monotonic() - t0, hints)
    res.update(prompt_report(daemon.audio, t0, echo))
    res.update(override_report(visitors, staff, echo))
    if synced is not None:
        res["sync"] = synced
        echo(f"outbox after the run: {synced['outbox_depth']} events"
             + (f"; the hub holds {synced['hub_events']}" if synced["hub_events"] is not None else ""))
    if report is not None:
        report.write_text(json.dumps(res, ensure_ascii=False, indent=1) + "\n")
        echo(f"report written to {report}")
    return res


def arrivals_per_min(visitors) -> float:
    """How fast people arrive, first arrival to last (a passed-on code's friend included)."""
    span = visitors[-1].arrive_at - visitors[0].arrive_at if visitors else 0.0
    return 60 * (len(visitors) - 1) / span if span > 0 else 0.0


def served_per_min(visitors) -> float | None:
    """How fast the lane answered them: decided visitors over the time from the first one
    presenting to the last answer. Lower than the arrivals when people queue."""
    decided = [v for v in visitors if v.decided_at is not None and v.presented_at is not None]
    if len(decided) < 2:
        return None
    span = max(v.decided_at for v in decided) - min(v.presented_at for v in decided)
    return round(60 * len(decided) / span, 1) if span > 0 else None


def gate_method(v) -> str:
    """How ``v`` presented: ``qr`` (the camera), ``scanner`` (a code at the scan engine), or a card."""
    return "scanner" if v.scanner else v.method


def time_to_gate(visitors) -> dict[str, dict]:
    """Per way of presenting (:func:`gate_method`): from presenting (phone raised, card placed,
    code scanned) to the gate command or the panel, over those answered."""
    out: dict[str, dict] = {}
    for method in dict.fromkeys(gate_method(v) for v in visitors):
        t = [v.decided_at - v.presented_at for v in visitors
             if gate_method(v) == method and v.decided_at is not None and v.presented_at is not None]
        out[method] = {"n": len(t), "p50_s": round(pct(t, 50), 3) if t else None,
                       "p95_s": round(pct(t, 95), 3) if t else None, "max_s": round(max(t), 3) if t else None}
    return out


def _staff_app(cfg):
    """Fresh staff QR codes, signed with the key set's hub key (beside the config's key files)."""
    from terminal.crypto.keyfiles import load_private_key
    hub_pem = cfg.path.parent / "hub.pem"
    if not hub_pem.exists():
        return None
    key = load_private_key(hub_pem)
    return lambda: staff_code(key, "H0001-017")


def summarize(visitors, relay, out: Path, echo, wall: float, hints: Counter | None = None) -> dict:
    decided = [v for v in visitors if v.result is not None]
    agree = [v for v in decided if (v.result.decision, v.result.reason) == v.expect]
    lat = [v.result.latency_ms for v in decided]
    admitted_wrongly = [v.n for v in decided if v.result.decision == "allow" and v.expect[0] != "allow"]
    res = {
        "visitors": len(visitors),
        "decided": len(decided),
        "agreement": round(len(agree) / len(visitors), 4) if visitors else 1.0,
        "counts": {
            "decision": dict(Counter(v.result.decision for v in decided)),
            "reason": dict(Counter(v.result.reason for v in decided)),
            "method": dict(Counter(v.method for v in decided)),
            "input": dict(Counter(v.method if v.method != "qr" else "scanner" if v.scanner else "camera"
                                  for v in decided)),
        },
        "wrongly_admitted": admitted_wrongly,
        "never_decided": sum(1 for v in visitors if v.result is None),
        "missed": [{"visitor": v.n, "kind": v.kind} for v in visitors if v.result is None],
        "time_to_gate": time_to_gate(visitors),
        "per_visitor": [{"visitor": v.n, "kind": v.kind, "method": gate_method(v),
                         "time_to_gate_s": round(v.decided_at - v.presented_at, 3)
                         if v.decided_at is not None and v.presented_at is not None else None,
                         "got": [v.result.decision, v.result.reason] if v.result is not None else None}
                        for v in visitors],
        "served_per_min": served_per_min(visitors),
        "guidance": dict(hints or {}),
        "disagreements": [{"visitor": v.n, "kind": v.kind, "expected": list(v.expect),
                           "got": [v.result.decision, v.result.reason]} for v in decided if v not in agree],
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p99_ms": round(pct(lat, 99), 1) if lat else None,
        "gate_pulses": len(relay.pulses),
        "allowed": sum(1 for v in decided if v.result.decision == "allow"),
        "screens": str(out / "screens"),
        "seconds": round(wall, 1),
    }
    echo("")
    echo(f"visitors {res['visitors']}, decided {res['decided']}, never decided {res['never_decided']}, "
         f"agreement {res['agreement']:.3f}, frame/card-to-gate latency p50 {res['p50_ms']} ms "
         f"p99 {res['p99_ms']} ms; served {res['served_per_min']}/min")
    echo("time to gate, from presenting: " + "; ".join(
        f"{m} n {t['n']} p50 {t['p50_s']} s p95 {t['p95_s']} s max {t['max_s']} s"
        for m, t in res["time_to_gate"].items()))
    if res["guidance"]:
        echo("hints shown: " + ", ".join(f"{k} {n}" for k, n in sorted(res["guidance"].items())))
    echo("decisions: " + ", ".join(f"{k} {n}" for k, n in sorted(res["counts"]["decision"].items())))
    echo("reasons:   " + ", ".join(f"{k} {n}" for k, n in sorted(res["counts"]["reason"].items())))
    echo(f"gate pulses {res['gate_pulses']} for {res['allowed']} allowed; screens in {res['screens']}")
    if res["missed"] or res["disagreements"]:
        echo(f"missed {res['missed']}; disagreements {res['disagreements']}")
    return res



def prompt_report(audio, t0: float, echo) -> dict:
    """Every prompt the terminal played (the WAV sink has a copy of each in prompts/), when,
    and how long after its decision its first sample came."""
    from terminal.audio.prompts import PROMPTS, SPEECH
    played = audio.history if audio is not None else []
    prompts = [{"seq": p.seq, "prompt": p.key, "mode": p.mode,
                "text": PROMPTS[p.key].text if p.mode == SPEECH else None,
                "at_s": round(p.started_ns / 1e9 - t0, 3), "latency_ms": round(p.latency_ms, 2)}
               for p in played]
    lat = [p["latency_ms"] for p in prompts]
    p99 = round(pct(lat, 99), 2) if lat else None
    echo(f"prompts {len(prompts)}, decision to first sample p99 {p99} ms")
    return {"prompts": prompts, "audio_p99_ms": p99}
