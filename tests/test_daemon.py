"""The daemon at the door against the simulated hardware: real drivers, real pseudo-terminals."""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import qrcode

from drivers.camera import FrameGrabber
from sim.crowd import ScenarioCamera, resident_card
from sim.demo import write_config as demo_config
from sim.idcard_sam import VirtualSam
from sim.issuer import Issuer, Person, random_id_number
from sim.relay import VirtualRelay
from sim.serial_endpoint import SerialEndpoint
from sim.sscard_reader import VirtualSsCard, VirtualSsReader
from drivers.relay import PulseOutcome
from terminal import config as cfgmod
from terminal.commands.status import render as render_status, status_snapshot
from terminal.daemon import Daemon
from terminal.core.cardstatus import StatusSource
from terminal.core.presentation import QrPresentations

from conftest import ROOT
from waiting import wait_for


class WatchedGrabber(FrameGrabber):
    """The grabber, telling the test which frames the daemon's camera loop has finished with: the
    loop takes one frame at a time, so taking a frame means the one before it was decoded and
    observed."""

    def __init__(self, source):
        super().__init__(source)
        self.taken: list[float] = []  # capture times of the frames handed to the camera loop

    def wait_newer(self, after: int = 0, timeout: float = 1.0):
        frame = super().wait_newer(after, timeout)
        if frame is not None:
            self.taken.append(frame.ts)
        return frame

    def observed_after(self, t: float) -> list[float]:
        """Capture times after ``t`` of the frames the camera loop has observed."""
        return [ts for ts in self.taken[:-1] if ts > t]


def phone_taken_away(camera: ScenarioCamera, grabber: WatchedGrabber, gap: float) -> None:
    """Clear the camera and wait until the camera loop has seen it empty for longer than ``gap``:
    shown again, the code is a new presentation."""
    camera.clear()
    gone = time.monotonic()
    wait_for(lambda: grabber.observed_after(gone), "a frame taken after the phone left")
    # That frame may still show the phone (read before the clear); every frame after it is empty.
    last_with_phone = grabber.observed_after(gone)[0]
    wait_for(lambda: grabber.observed_after(last_with_phone + gap), "the camera empty for the gap")


def card_taken_off(sim, ask) -> None:
    """Take the card off a virtual reader and wait until the reader has seen it gone: two of its
    ``ask`` commands after the removal (the second goes out only once the first's "no card"
    answer is in)."""
    sim.card = None
    n = len(sim.commands)
    wait_for(lambda: sim.commands[n:].count(ask) >= 2, "the reader to see the card gone")


FIND = b"\x20\x01"   # the SAM's find-card command
SS_PRESENT = 0x31      # the social-security reader's card-present query


def test_presentations_from_frames():
    t = QrPresentations(gap=1.0)
    assert t.observe(["SDHC1:A"], 0.0) == ["SDHC1:A"]
    assert t.observe(["SDHC1:A", "SDHC1:A "], 0.1) == []         # the same phone, several frames
    assert t.observe([], 0.5) == []                              # a blurred frame in between
    assert t.observe(["SDHC1:A", "SDHC1:B"], 0.9) == ["SDHC1:B"]  # a second phone beside it
    assert t.observe([], 2.5) == [] and t.in_view == 0
    assert t.observe(["SDHC1:A"], 2.6) == ["SDHC1:A"]            # back after leaving: a new presentation


def test_other_codes_need_two_frames():
    t = QrPresentations(gap=1.0)
    assert t.observe(["2576"], 0.0) == []             # one frame of noise read as digits: nothing
    assert t.observe([], 1.5) == [] and t.in_view == 0
    assert t.observe(["https://pay.example/x"], 2.0) == []
    assert t.observe(["https://pay.example/x"], 2.1) == ["https://pay.example/x"]  # a real other code
    assert t.observe(["https://pay.example/x"], 2.2) == []


def write_config(keys: Path, tmp: Path, ports: dict, camera: str | None = None) -> Path:
    return demo_config(keys, tmp / "screens", "mall", ports, camera=camera, pulse_ms=200, result_seconds=0.5)


@pytest.fixture
def rig(keyset, tmp_path):
    """Virtual SAM, social-security reader and relay on pseudo-terminals, and a config naming them."""
    sam, ss, relay = VirtualSam(read_delay=0.05), VirtualSsReader(), VirtualRelay()
    eps = {"id_card": SerialEndpoint(sam), "ss_card": SerialEndpoint(ss), "relay": SerialEndpoint(relay)}
    for ep in eps.values():
        ep.start()
    yield {"keys": keyset, "sam": sam, "ss": ss, "relay": relay, "eps": eps,
           "config": write_config(keyset, tmp_path, {k: e.url for k, e in eps.items()})}
    for ep in eps.values():
        ep.stop()


def events(keys: Path) -> list[dict]:
    con = sqlite3.connect(f"file:{keys / 'state' / 'terminal.db'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM events ORDER BY seq")]
    except sqlite3.OperationalError:  # the daemon has not created its schema yet
        return []
    finally:
        con.close()


def test_end_to_end_with_every_input(rig, tmp_path):
    cfg = cfgmod.load(rig["config"])
    issuer = Issuer.from_dir(rig["keys"])
    camera = ScenarioCamera(level="clean", fps=20)
    grabber = WatchedGrabber(camera)
    results = []
    daemon = Daemon(cfg, camera=grabber, on_result=lambda p, r: results.append((p, r)))
    daemon.start()
    try:
        def show(text):
            n = len(results)
            camera.show(text, 40)
            wait_for(lambda: len(results) > n, "a decision for the code under the camera")
            decided = time.monotonic()
            # more frames of the same phone: still one presentation
            wait_for(lambda: len(grabber.observed_after(decided)) >= 5, "more frames of the same phone")
            phone_taken_away(camera, grabber, cfg.camera.gap)
            return results[-1][1]

        green = issuer.issue(Person(name="张三"))
        r = show(green)
        assert (r.decision, r.reason, r.method, r.name) == ("allow", "ok", "qr", "张*")
        assert wait_for(lambda: len(rig["relay"].pulses) == 1 and rig["relay"].pulses[0].off_at)
        assert show(issuer.issue(Person(status="red"))).reason == "red_code"
        assert show(green).reason == "replayed"   # the same code back after the person left

        id_number = random_id_number()
        rig["sam"].card = resident_card("李四", id_number)
        assert wait_for(lambda: results[-1][1].method == "id_card")
        card_taken_off(rig["sam"], FIND)
        rig["ss"].card = VirtualSsCard(ss_number=random_id_number(), name="王五")
        assert wait_for(lambda: results[-1][1].method == "ss_card")
        card_taken_off(rig["ss"], SS_PRESENT)  # and not presented again while it lay there
    finally:
        daemon.stop()
    got = [(r.method, r.decision, r.reason) for _, r in results]
    assert got == [("qr", "allow", "ok"), ("qr", "deny", "red_code"), ("qr", "deny", "replayed"),
                   ("id_card", "review", "status_unavailable"), ("ss_card", "review", "status_unavailable")]
    rows = events(rig["keys"])
    assert [(e["method"], e["decision"], e["reason"]) for e in rows] == got
    assert all(e["latency_ms"] > 0 and e["subject"] for e in rows)
    assert len(rig["relay"].pulses) == 1             # one allow, one gate opening
    assert rig["relay"].commands[-1].on is False      # and the gate is closed again
    pngs = sorted((tmp_path / "screens").glob("0*.png"))
    assert len(pngs) >= 5
    assert not [t for t in threading.enumerate() if t.name in ("decide", "camera", "screen", "id_card")]


def test_unplugged_reader_keeps_the_rest_working(rig):
    cfg = cfgmod.load(rig["config"])
    issuer = Issuer.from_dir(rig["keys"])
    camera = ScenarioCamera(level="clean", fps=20)
    results = []
    daemon = Daemon(cfg, camera=FrameGrabber(camera), on_result=lambda p, r: results.append(r))
    daemon.start()
    try:
        rig["eps"]["id_card"].unplug()
        assert wait_for(lambda: "id_card" in daemon.devices.errors(), timeout=10)
        assert list(daemon.alarms.active()) == ["id_card_down"]
        assert daemon.screen_loop.alarms() == ["身份证读卡器故障"]
        camera.show(issuer.issue(Person()), 30)      # the camera still lets people through
        assert wait_for(lambda: results and results[-1].decision == "allow")
        camera.clear()
        rig["eps"]["id_card"].replug()
        assert wait_for(lambda: "id_card" not in daemon.devices.errors(), timeout=15)
        id_number = random_id_number()
        rig["sam"].card = resident_card("赵六", id_number)
        assert wait_for(lambda: results[-1].method == "id_card", timeout=10)
    finally:
        daemon.stop()


def test_unreadable_card_is_logged_without_its_fields(rig, caplog):
    """A card with a malformed birth date: the log says which field, and nothing of the card."""
    caplog.set_level(logging.DEBUG)
    card = resident_card("钱七", "370102199001011231")
    card.birth = "19900231"
    rig["sam"].card = card
    daemon = Daemon(cfgmod.load(rig["config"]))
    daemon.start()
    try:
        assert wait_for(lambda: "card not read" in caplog.text)
    finally:
        daemon.stop()
    assert "id_card: card not read: birth date is not a date" in caplog.text
    for secret in ("19900231", card.name, card.id_number, card.address, "钱"):
        assert secret not in caplog.text


def test_sigterm_mid_presentation(rig, tmp_path):
    """SIGTERM while a card read is in progress and a code is under the camera: the daemon
    finishes what it took, exits 0, leaves no half-written event, and every gate pulse has
    its committed allow event."""
    issuer = Issuer.from_dir(rig["keys"])
    image = tmp_path / "phone.png"
    qrcode.make(issuer.issue(Person()), box_size=4).save(image)
    config = write_config(rig["keys"], tmp_path, {k: e.url for k, e in rig["eps"].items()}, camera=str(image))
    rig["sam"].read_delay = 0.4
    id_number = random_id_number()
    rig["sam"].card = resident_card("孙七", id_number)
    proc = subprocess.Popen([sys.executable, "-m", "terminal", "run", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        db = rig["keys"] / "state" / "terminal.db"
        assert wait_for(lambda: db.exists() and len(events(rig["keys"])) >= 2, timeout=30), proc.stderr
        card_taken_off(rig["sam"], FIND)
        reads = rig["sam"].commands.count(b"\x30\x01")
        id_number = random_id_number()
        rig["sam"].card = resident_card("周八", id_number)
        # SIGTERM once the reader has asked for the second card's data (answered 0.4 s later)
        assert wait_for(lambda: rig["sam"].commands.count(b"\x30\x01") > reads, timeout=5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    rows = events(rig["keys"])
    assert all(all(e[k] is not None for k in ("id", "at", "method", "decision", "reason", "latency_ms"))
               for e in rows)
    # the card being read when SIGTERM came was finished and decided, not dropped
    assert [e["method"] for e in rows].count("id_card") == 2
    allows = [e for e in rows if e["decision"] == "allow"]
    assert len(allows) == 1                           # the code under the camera: one presentation
    assert len(rig["relay"].pulses) == len(allows)    # no pulse without its committed event
    assert rig["relay"].commands[-1].on is False      # the gate is closed on the way out
    assert [e["seq"] for e in rows] == list(range(1, len(rows) + 1))
    assert os.path.exists(rig["keys"] / "state" / "lock")


def test_systemd_notify_protocol(rig, tmp_path):
    """Under systemd: READY once everything is open, WATCHDOG while the loops make progress,
    STATUS lines, STOPPING on SIGTERM — over a real AF_UNIX datagram socket."""
    import socket
    issuer = Issuer.from_dir(rig["keys"])
    image = tmp_path / "phone.png"
    qrcode.make(issuer.issue(Person()), box_size=4).save(image)
    config = write_config(rig["keys"], tmp_path, {k: e.url for k, e in rig["eps"].items()}, camera=str(image))
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000")
    proc = subprocess.Popen([sys.executable, "-c", "import os, sys; os.environ['WATCHDOG_PID'] = str(os.getpid());"
                             "from terminal.cli import main; sys.exit(main(sys.argv[1:]))",
                             "run", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    messages: list[str] = []

    def receive_until(cond, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                pass

    try:
        receive_until(lambda: sum("WATCHDOG=1" in m for m in messages) >= 3)
        proc.send_signal(signal.SIGHUP)  # reload: RELOADING=1, then READY=1 again
        receive_until(lambda: sum("READY=1" in m for m in messages) >= 2)
        proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 20
        while time.monotonic() < end and not any("STOPPING=1" in m for m in messages):
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                pass
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    ready = [i for i, m in enumerate(messages) if "READY=1" in m]
    pings = [i for i, m in enumerate(messages) if "WATCHDOG=1" in m]
    stopping = [i for i, m in enumerate(messages) if "STOPPING=1" in m]
    reloading = [i for i, m in enumerate(messages) if "RELOADING=1" in m]
    assert len(ready) == 2 and "STATUS=" in messages[ready[0]]
    assert len(pings) >= 3 and pings[0] > ready[0]
    assert len(reloading) == 1 and ready[0] < reloading[0] < ready[1]
    assert stopping and stopping[0] > ready[0]
    assert proc.returncode == 0


def test_reload_changes_policy_not_the_camera(rig, tmp_path):
    cfg = cfgmod.load(rig["config"])
    camera = ScenarioCamera(level="clean", fps=20)
    grabber = FrameGrabber(camera)
    results = []
    daemon = Daemon(cfg, camera=grabber, on_result=lambda p, r: results.append(r))
    daemon.start()
    try:
        def card(name):
            n = len(results)
            rig["sam"].card = resident_card(name, random_id_number())
            assert wait_for(lambda: len(results) > n, timeout=10)
            card_taken_off(rig["sam"], FIND)
            return results[-1]

        assert (card("甲").decision, results[-1].reason) == ("review", "status_unavailable")
        rig["config"].write_text(rig["config"].read_text() + '\n[policy]\noffline_unknown = "deny"\n')
        reloaded = cfgmod.load(rig["config"])
        daemon.reload(reloaded)
        wait_for(lambda: daemon.cfg is reloaded, "the decide thread to apply the reload")
        assert card("乙").decision == "deny"
        assert grabber.opens == 1  # the camera kept streaming through the reload
        rig["config"].write_text(rig["config"].read_text() + "\n[policy]\nred = 'x'\n")
        with pytest.raises(cfgmod.ConfigError):
            cfgmod.load(rig["config"])  # a bad edit is refused before it reaches the daemon
    finally:
        daemon.stop()


def test_a_failing_status_lookup_costs_one_card_not_the_reader(rig, mocker):
    """Issue #12 finding 8: whatever a lookup raises, the card is decided by offline_unknown and
    the reader's thread lives on to read the next card."""
    cfg = cfgmod.load(rig["config"])
    results, asked = [], []
    source = mocker.create_autospec(StatusSource, instance=True)
    source.lookup.side_effect = [RuntimeError("unforeseen"), None]  # an error nobody foresaw, then no answer
    daemon = Daemon(cfg, status_source=source, on_result=lambda p, r: results.append(r))
    daemon.start()
    try:
        for name in ("李四", "王五"):
            n, id_number = len(results), random_id_number()
            asked.append(("id_card", id_number, name))
            rig["sam"].card = resident_card(name, id_number)
            wait_for(lambda: len(results) > n, f"a decision for {name}'s card")
            card_taken_off(rig["sam"], FIND)
    finally:
        daemon.stop()
    assert [c.args[:3] for c in source.lookup.call_args_list] == asked  # once per card, that card
    assert [(r.method, r.decision, r.reason) for r in results] == [("id_card", "review", "status_unavailable")] * 2


def headlines(daemon: Daemon, spy) -> list[str]:
    """The headline of every result panel the screen drew (``spy``: on its renderer's ``result``)."""
    layout = daemon.screen_loop.renderer.layout_result
    return ["".join(i.text for i in layout(c.args[0]).role("headline")) for c in spy.call_args_list]


def test_a_relay_known_down_never_says_walk_through(rig, mocker):
    """Issue #12 finding 1: the relay unplugged while nobody passes is known (relay_down, in
    status), the next allow is recorded as gate "fault", no pulse, and shown as 请联系工作人员开门;
    plugged back, an allow opens the gate again and says 请通行."""
    cfg = cfgmod.load(rig["config"])
    issuer = Issuer.from_dir(rig["keys"])
    camera = ScenarioCamera(level="clean", fps=20)
    grabber = WatchedGrabber(camera)
    results = []
    daemon = Daemon(cfg, camera=grabber, on_result=lambda p, r: results.append(r))
    daemon.housekeeping_every = 0.2   # the status file every 0.2 s, not 5 s: relay_down reaches it sooner
    daemon.open()
    panels = mocker.spy(daemon.screen_loop.renderer, "result")
    daemon.start()
    state = rig["keys"] / "state"
    try:
        def allow(name):
            n = len(results)
            camera.show(issuer.issue(Person(name=name)), 40)
            wait_for(lambda: len(results) > n and panels.call_count > n, f"{name}'s decision on the screen")
            phone_taken_away(camera, grabber, cfg.camera.gap)
            return results[-1]

        assert rig["relay"].wait_for(lambda r: r.commands)     # the start-up OFF: the relay is there
        rig["eps"]["relay"].unplug()
        wait_for(lambda: "relay_down" in daemon.alarms.active(), "relay_down without a pulse")
        assert daemon.screen_loop.alarms() == ["闸机继电器故障"]
        r = allow("张三")
        assert (r.decision, r.gate) == ("allow", "fault")
        wait_for(lambda: "relay_down" in status_snapshot(state)["alarms"], "relay_down in status", timeout=15)
        snap = status_snapshot(state)
        snap["terminal_id"] = cfg.terminal_id
        problems = [ln for ln in render_status(snap).splitlines() if ln.startswith("PROBLEM:  relay_down: ")]
        assert len(problems) == 1 and rig["eps"]["relay"].url in problems[0]
        assert "relay OUT OF ORDER" in render_status(snap)

        rig["eps"]["relay"].replug()
        wait_for(lambda: "relay_down" not in daemon.alarms.active(), "the relay back", timeout=15)
        r = allow("李四")
        assert (r.decision, r.gate) == ("allow", "opened")
        assert rig["relay"].wait_for(lambda r: len(r.pulses) == 1 and r.pulses[0].off_at)
    finally:
        daemon.stop()
    assert headlines(daemon, panels) == ["请联系工作人员开门", "请通行"]
    assert [(e["decision"], e["gate"]) for e in events(rig["keys"])] == [("allow", "fault"), ("allow", "opened")]
    assert len(rig["relay"].pulses) == 1                  # none for the allow at the shut gate


class RelayDyingAtThePulse:
    """A relay the driver last found working, whose pulse then fails (the line died between)."""
    wired = True

    def __init__(self):
        self.error = None
        self.asked = 0

    def pulse(self, ms):
        self.asked += 1
        self.error = "/dev/gate/relay: I/O error"
        return PulseOutcome(False)

    def close(self):
        pass


def test_a_pulse_that_fails_after_the_commit_is_not_shown_as_walk_through(rig, mocker):
    """The other side of finding 1: the event was committed as "opened" (store before gate), the
    pulse then failed: the screen says 请联系工作人员开门, relay_down is raised at once."""
    relay, camera, results = RelayDyingAtThePulse(), ScenarioCamera(level="clean", fps=20), []
    daemon = Daemon(cfgmod.load(rig["config"]), camera=FrameGrabber(camera), relay=relay,
                    on_result=lambda p, r: results.append(r))
    daemon.open()
    panels = mocker.spy(daemon.screen_loop.renderer, "result")
    daemon.start()
    try:
        camera.show(Issuer.from_dir(rig["keys"]).issue(Person()), 30)
        wait_for(lambda: results and panels.call_count, "the decision on the screen")
        assert daemon.alarms.active() == {"relay_down": "/dev/gate/relay: I/O error"}
    finally:
        daemon.stop()
    assert (results[0].decision, results[0].gate, relay.asked) == ("allow", "opened", 1)
    assert headlines(daemon, panels) == ["请联系工作人员开门"]


def test_status_after_a_clean_stop_says_not_running(rig):
    """Issue #12 finding 3: `status` sees the daemon from its start, and not a moment after it
    stopped: no stale devices, no hub, no alarms."""
    daemon = Daemon(cfgmod.load(rig["config"]))
    state = rig["keys"] / "state"
    daemon.start()
    try:
        wait_for(lambda: status_snapshot(state)["daemon"] == "running", "status to see the daemon")
        assert "relay ok" in render_status(status_snapshot(state) | {"terminal_id": "t"})
    finally:
        daemon.stop()
    snap = status_snapshot(state) | {"terminal_id": "t"}
    assert (snap["daemon"], snap["problems"], snap["alarms"]) == ("not running", ["daemon not running"], [])
    assert snap["live"]["state"] == "stopped" and snap["live"]["pid"] == os.getpid()   # this process lives on
    text = render_status(snap)
    assert "relay ok" not in text and "devices:" not in text and "hub:" not in text


def test_a_missing_framebuffer_is_an_alarm_not_a_stop(rig, tmp_path, monkeypatch):
    """Issue #12 finding 5: no framebuffer at start → screen_down, the terminal decides anyway,
    and the screen is opened (and drawn on) once it appears."""
    from terminal.screen import framebuffer
    # A plain file stands in for the device once it appears: it has no ioctl to say its geometry.
    monkeypatch.setattr(framebuffer, "read_geometry", lambda fd: framebuffer.FbGeometry.for_format("BGRX", 320, 240))
    fb = tmp_path / "fb0"
    text = rig["config"].read_text()
    start = text.index('[screen]\nkind = "png"')
    rig["config"].write_text(text[:start] + f'[screen]\nkind = "framebuffer"\npath = "{fb}"\nresult_seconds = 0.5\n')
    camera, results = ScenarioCamera(level="clean", fps=20), []
    daemon = Daemon(cfgmod.load(rig["config"]), camera=FrameGrabber(camera), on_result=lambda p, r: results.append(r))
    daemon.start()
    try:
        assert "cannot open" in daemon.alarms.active()["screen_down"]
        camera.show(Issuer.from_dir(rig["keys"]).issue(Person()), 30)
        wait_for(lambda: results, "a decision without a screen")
        assert results[0].decision == "allow"
        fb.write_bytes(b"")                                        # the framebuffer appears
        wait_for(lambda: "screen_down" not in daemon.alarms.active(), "the screen opened again", timeout=20)
        wait_for(lambda: fb.stat().st_size == 320 * 240 * 4, "an image on the framebuffer")
        assert daemon.screen_loop.renderer.size == (320, 240)      # the size the device says
    finally:
        daemon.stop()


def test_the_idle_screen_asks_only_for_what_works(rig, mocker):
    """Issue #12 finding 7: a camera that is down is not asked for a code, a reader unplugged not
    for its card, and with nothing working the screen says so."""
    from drivers.camera import open_source
    camera = FrameGrabber(open_source("/dev/video-does-not-exist"), backoff_min=0.05, backoff_max=0.2)
    daemon = Daemon(cfgmod.load(rig["config"]), camera=camera)
    daemon.open()
    idle = mocker.spy(daemon.screen_loop.renderer, "idle")
    layout = daemon.screen_loop.renderer.layout_idle

    def asks(prompt):
        def shown():
            return idle.call_count and "".join(i.text for i in layout(*idle.call_args.args).role("prompt")) == prompt
        wait_for(shown, f"the idle screen to ask {prompt}", timeout=15)

    daemon.start()
    try:
        asks("请刷身份证/社保卡")                       # the camera is down, both readers work
        rig["eps"]["id_card"].unplug()
        asks("请刷社保卡")
        rig["eps"]["ss_card"].unplug()
        asks("设备故障，请联系工作人员")
        rig["eps"]["id_card"].replug()
        asks("请刷身份证")
    finally:
        daemon.stop()
