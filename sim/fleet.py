"""``gate-terminal sim fleet``: N simulated terminals against one Mosquitto and the hub simulator.

The parent process owns the platform — a Mosquitto (sim/broker.py: TLS, client certificates,
the ACL) on a free port and the hub simulator (sim/hub.py) — and spreads the terminals over a
few worker processes (sim/fleet_worker.py), each running its slice as threads: the real store,
outbox and hub link per terminal, synthetic decisions instead of a camera.

A run: make the key set and the broker; the workers make their terminals (SM2 device key,
TLS client certificate from the broker's CA, state directory) and say their public keys; the hub
registers them; the links start spread over ``ramp`` seconds and the events flow for
``duration`` seconds; optionally the broker is restarted at ``restart_at`` (SIGTERM: it saves
its sessions, as for an upgrade) and the reconnect storm is measured; then the outboxes drain
(every event acked by the hub, or ``drain_timeout``) and the report is written.

The report's accounting is exactly-once by (tid, epoch, seq): every event a terminal committed
must be held by the hub exactly once (``missing`` and ``unexpected`` 0). Deliveries are at least
once: the duplicates the hub dropped (resent batches) are counted, not held.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from sim.fleet_worker import WorkerSpec, main as worker_main

MAX_TERMINALS = 5_000
TID_FORMAT = "370102-F{:05d}-01"
# paho's network loop watches its socket with select(), which cannot take a descriptor of 1024
# or above (the socket is then never read: the broker times the client out). A simulated
# terminal holds ~9 (three SQLite connections with their WAL files, the state lock, the socket,
# paho's wake-up pair), so a worker process runs at most this many.
PER_WORKER = 80
STATUS_EVERY = 1.0


class FleetError(RuntimeError):
    """The fleet could not be set up (a worker failed to make its terminals, the broker, ...)."""


def tids(n: int) -> list[str]:
    return [TID_FORMAT.format(i) for i in range(1, n + 1)]


def default_workers(n: int) -> int:
    """A few processes, not N: as few as hold PER_WORKER terminals each."""
    return -(-n // PER_WORKER)


def _rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watch_listen(host: str, port: int, out: list[float], timeout: float = 60.0) -> None:
    """Append the moment ``host:port`` accepts a TCP connection (the kernel completes it once the
    broker listens, before the broker itself gets to it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                out.append(time.monotonic())
                return
        except OSError:
            time.sleep(0.01)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def per_second(times: list[float], since: float) -> list[int]:
    """How many of ``times`` fell in each whole second after ``since`` (a histogram)."""
    counts = Counter(int(t - since) for t in times if t >= since)
    return [counts.get(i, 0) for i in range(max(counts) + 1)] if counts else []


class Fleet:
    def __init__(self, out: Path, terminals: int, *, workers: int | None = None, seed: int | None = None,
                 time_interval: float = 600.0, rollout: tuple[Path, Path] | None = None, ack_timeout: float = 15.0,
                 line=print) -> None:
        if not 1 <= terminals <= MAX_TERMINALS:
            raise ValueError(f"terminals must be 1-{MAX_TERMINALS}")
        self.out = Path(out).resolve()   # the terminals resolve paths from their own directories
        self.n = terminals
        self.workers_n = min(terminals, workers or default_workers(terminals))
        if -(-terminals // self.workers_n) > PER_WORKER:
            raise ValueError(f"{self.workers_n} workers for {terminals} terminals: at most {PER_WORKER} a worker")
        self.seed = seed
        self.time_interval = time_interval
        self.ack_timeout = ack_timeout
        self.line = line
        self.broker = None
        self.hub = None
        self.keys: dict[str, str] = {}
        self._procs: list = []
        self._conns: list = []
        self.timeline: list[dict] = []
        self.rollout_dirs = rollout
        self.releases: tuple[str, str] | None = None   # (good version, bad version)
        self.repo_server = None
        self.broker_cpu = 0.0  # CPU seconds of broker processes already stopped
        self.workers_cpu = 0.0

    # --- setup ----------------------------------------------------------------------
    def start(self) -> "Fleet":
        from sim.broker import Broker
        from sim.devkeys import write_key_set
        self.out.mkdir(parents=True, exist_ok=True)
        keydir = self.out / "keys"
        self.platform_keys = write_key_set(keydir, terminal_id="370102-F00000-01", force=True)
        # Deep enough for every terminal's QoS 1 backlog while its link is down.
        self.broker = Broker(workdir=self.out / "broker", max_queued_messages=1000).start()
        self.rss_idle = _rss_kib(self.broker.pid)
        self.line(f"broker {self.broker.url} (pid {self.broker.pid}); making {self.n} terminals "
                  f"in {self.workers_n} worker processes")
        rollout_spec = self._release_repository() if self.rollout_dirs is not None else None
        t0 = time.monotonic()
        all_tids = tids(self.n)
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        for w in range(self.workers_n):
            spec = WorkerSpec(index=w, tids=tuple(all_tids[w::self.workers_n]), root=self.out,
                              broker_url=self.broker.url, broker_ca=self.broker.ca, ca_key=self.broker.pki.key,
                              root_key_hex=self.platform_keys["root"].public_key.hex(),
                              hub_key_hex=self.platform_keys["hub"].public_key.hex(),
                              trust_list=keydir / "trust.envelope.json", data_keys=keydir / "data_keys.json",
                              seed=self.seed, rollout=rollout_spec, ack_timeout=self.ack_timeout)
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(child, spec), name=f"fleet-worker-{w}", daemon=True)
            p.start()
            child.close()
            self._procs.append(p)
            self._conns.append(parent)
        for conn in self._conns:
            kind, value = self._recv(conn, 600.0)
            if kind != "ready":
                raise FleetError(f"a worker could not make its terminals: {value}")
            self.keys.update(value)
        self.setup_seconds = time.monotonic() - t0
        self.line(f"{len(self.keys)} terminals made in {self.setup_seconds:.1f} s; starting the hub")
        self._start_hub()
        return self

    def _release_repository(self):
        """The good and bad bundles in a TUF repository served over HTTPS; the workers' RolloutSpec."""
        from sim.fleet_rollout import BASE_VERSION, RolloutSpec
        from sim.tufrepo import BUNDLE, ReleaseRepo, RepoServer, role_keys
        from terminal.hub.wire import version_key
        versions = []
        for d in self.rollout_dirs:
            found = [(p, m.group(1)) for p in sorted(Path(d).glob("gate-terminal-*.tar"))
                     if (m := BUNDLE.fullmatch(p.name))]
            if len(found) != 1:
                raise FleetError(f"--rollout {d}: expected one gate-terminal-<version>.tar "
                                 f"(gate-terminal release build --out {d}), found {len(found)}")
            try:
                if version_key(found[0][1]) <= version_key(BASE_VERSION):
                    raise ValueError(f"not newer than the simulated terminals' {BASE_VERSION}")
            except ValueError as e:
                raise FleetError(f"--rollout {d}: {found[0][0].name}: {e}") from None
            versions.append(found[0])
        (good, vg), (bad, vb) = versions
        if vg == vb:
            raise FleetError(f"--rollout: both bundles are version {vg}")
        repo = ReleaseRepo(self.out / "tuf", role_keys(self.out / "keys"))
        repo.add_bundle(good, vg)
        repo.add_bundle(bad, vb)
        repo.publish()
        self.repo_server = RepoServer(repo.directory, self.broker.server_cert, self.broker.server_key).start()
        self.releases = (vg, vb)
        self.line(f"release repository {self.repo_server.url}: good {vg}, bad {vb}")
        return RolloutSpec(self.repo_server.url, repo.meta_dir / "1.root.json", self.broker.ca, (vb,))

    def roll_out(self, version: str, timeout: float) -> list[dict]:
        """Roll ``version`` out (pilot: a tenth of the fleet by name; then all) and time its stages
        until its last stage is done, it is halted, or ``timeout``."""
        from sim.fleet_rollout import RolloutWatch
        from sim.rollout import StagePlan
        pilot = tuple(tids(self.n)[:max(1, self.n // 10)])
        started = time.monotonic()
        self.hub.start_rollout(version, [StagePlan("pilot", tids=pilot), StagePlan("all", percent=100)])
        watch = RolloutWatch(self.hub, version, started)
        last_record = 0.0
        while not watch.poll(time.monotonic()):
            if time.monotonic() - started > timeout:
                watch.stages.append({"version": version, "outcome": "timed out",
                                     "seconds": round(time.monotonic() - started, 2)})
                break
            if time.monotonic() - last_record >= STATUS_EVERY:
                self.record()
                last_record = time.monotonic()
            time.sleep(0.1)
        return watch.stages

    def _start_hub(self) -> None:
        from sim.hub import HubSim
        from terminal.crypto.sm2 import PublicKey
        cert, key = self.broker.client_cert("hub")
        t0 = time.monotonic()
        self.hub = HubSim(self.broker.url, self.broker.ca, cert, key, hub_key=self.platform_keys["hub"],
                          root_key=self.platform_keys["root"], db_path=self.out / "hub.db",
                          terminals={tid: PublicKey.from_hex(h) for tid, h in self.keys.items()},
                          group=secrets.token_hex(12), client_id="hub", start_seq=1,
                          time_interval=self.time_interval, on_line=lambda s: None)
        self.hub.publish_trust((self.out / "keys" / "trust.envelope.json").read_bytes())
        self.hub.start()
        if not self.hub.wait_connected(30.0):
            raise FleetError("the hub simulator did not connect to the broker")
        self.line(f"hub up ({len(self.keys)} device keys precomputed in {time.monotonic() - t0:.1f} s)")

    def _recv(self, conn, timeout: float):
        if not conn.poll(timeout):
            raise FleetError(f"a worker did not answer within {timeout:g} s")
        try:
            return conn.recv()
        except EOFError:
            raise FleetError("a worker died (see its worker-N.log)") from None

    def _ask(self, msg: tuple, timeout: float = 60.0) -> list[tuple]:
        """Send ``msg`` to every worker; their answers, without the answer's kind."""
        for conn in self._conns:
            conn.send(msg)
        return [self._recv(conn, timeout)[1:] for conn in self._conns]

    # --- the run --------------------------------------------------------------------
    def status(self) -> dict:
        total: Counter = Counter()
        for (s,) in self._ask(("status",)):
            total.update(s)
        return dict(total)

    def go(self, duration: float, rate: float, ramp: float) -> float:
        """Links start over ``ramp`` s, events at ``rate``/s per terminal for ``duration`` s."""
        self.t0 = time.monotonic() + 0.2
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.hub_cpu0 = usage.ru_utime + usage.ru_stime
        self.broker_cpu0 = _cpu_seconds(self.broker.pid)
        self.until = self.t0 + duration
        for conn in self._conns:
            conn.send(("go", self.t0, self.until, rate, ramp))
        return self.t0

    def record(self) -> dict:
        s = self.status()
        s["t"] = round(time.monotonic() - self.t0, 2)
        s["hub_stored"] = self.hub.stats["stored"]
        s["broker_rss_kib"] = _rss_kib(self.broker.pid)
        self.timeline.append(s)
        return s

    def wait_until(self, when: float, cond=lambda s: False) -> dict | None:
        """Record the timeline every second until ``when`` or ``cond(status)``; the last status."""
        s = None
        while time.monotonic() < when:
            s = self.record()
            if cond(s):
                return s
            time.sleep(min(STATUS_EVERY, max(0.0, when - time.monotonic())))
        return s

    def restart_broker(self, down_for: float = 0.0) -> tuple[float, float]:
        """SIGTERM, ``down_for`` seconds, start again on the same port: (went down, listening
        again), monotonic. Listening is seen by a plain TCP connect every 10 ms: Broker.start's
        own readiness probe (a TLS CONNECT) waits its turn behind the reconnecting fleet."""
        self.broker_cpu += _cpu_seconds(self.broker.pid)
        down = time.monotonic()
        self.broker.stop()
        self.wait_until(down + down_for)
        listening: list[float] = []
        watcher = threading.Thread(target=_watch_listen, args=(self.broker.host, self.broker.port, listening),
                                   daemon=True)
        watcher.start()
        self.broker.start()
        watcher.join()
        return down, listening[0] if listening else time.monotonic()

    def drain(self, timeout: float) -> int:
        return sum(left for (left,) in self._ask(("drain", timeout), timeout + 60.0))

    def stop(self) -> list[dict]:
        results = []
        if self._conns:
            with contextlib.suppress(FleetError, OSError):
                for terminals, cpu in self._ask(("stop",), 120.0):
                    results.extend(terminals)
                    self.workers_cpu += cpu
        for p in self._procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        self._procs, self._conns = [], []
        if self.hub is not None:
            self.hub.stop()
        if self.repo_server is not None:
            self.repo_server.stop()
            self.repo_server = None
        return results

    def close(self) -> None:
        self.stop()
        if self.broker is not None:
            self.broker.stop()

    # --- the report -----------------------------------------------------------------
def account(hub_db: Path, results: list[dict]) -> tuple[dict, list[float]]:
    """Exactly once by (tid, epoch, seq): each terminal committed seqs 1..last_seq under its
    epoch (a fresh state directory); the hub must hold exactly those, each once. Also every
    event's stored_at (the hub's ingest histogram)."""
    want = {(r["tid"], r["epoch"]): r["last_seq"] for r in results}
    db = sqlite3.connect(hub_db)
    try:
        at_hub = missing = unexpected = 0
        for tid, epoch, count, hi in db.execute("SELECT tid, epoch, count(*), max(seq) FROM events "
                                                 "GROUP BY tid, epoch").fetchall():
            at_hub += count
            last = want.pop((tid, epoch), 0)
            inside = count if hi <= last else db.execute(  # seq is unique per (tid, epoch), >= 1
                "SELECT count(*) FROM events WHERE tid = ? AND epoch = ? AND seq <= ?",
                [tid, epoch, last]).fetchone()[0]
            missing += last - inside
            unexpected += count - inside
        missing += sum(want.values())  # terminals the hub holds nothing of
        stored_at = [t for (t,) in db.execute("SELECT stored_at FROM events")]
    finally:
        db.close()
    sent = sum(r["last_seq"] for r in results)
    return {"sent": sent, "at_hub": at_hub, "missing": missing, "unexpected": unexpected,
            "exactly_once": missing == 0 and unexpected == 0 and at_hub == sent}, stored_at


def run_fleet(*, terminals: int, duration: float, report: Path, out: Path | None = None,
              rate: float = 0.2, ramp: float | None = None, workers: int | None = None,
              restarts: list[tuple[float, float]] = (), drain_timeout: float = 120.0,
              rollout: tuple[Path, Path] | None = None, rollout_timeout: float = 600.0,
              seed: int | None = None, ack_timeout: float = 15.0, line=print) -> dict:
    """Run a fleet and write the JSON report to ``report``; returns it. ``restarts``: (at, down
    for) in seconds from the start, each a broker stop and start once every terminal is connected
    again (the reconnections of the one before measured, ``drain_timeout`` at most). ``rollout``:
    (GOOD_DIR, BAD_DIR) rolled out one after the other once the restarts are over. ``ack_timeout``:
    each terminal's wait for the hub's ack before it sends a batch again (the link's own 15 s)."""
    scratch = out is None
    if out is None:
        base = "/dev/shm" if Path("/dev/shm").is_dir() else None  # 500 stores' fsyncs on one disk
        out = Path(tempfile.mkdtemp(prefix="fleet-", dir=base))  # would measure the disk, not the link
    ramp = min(duration / 2, terminals / 100) if ramp is None else ramp
    fleet = Fleet(out, terminals, workers=workers, seed=seed, rollout=rollout, ack_timeout=ack_timeout, line=line)
    try:
        fleet.start()
        t0 = fleet.go(duration, rate, ramp)
        rep: dict = {"terminals": terminals, "workers": fleet.workers_n, "duration_s": duration,
                     "rate_per_terminal_per_s": rate, "ramp_s": ramp, "setup_s": round(fleet.setup_seconds, 1)}
        all_up = fleet.wait_until(t0 + duration, lambda s: s["connected"] == terminals)
        first_all = all_up["t"] if all_up and all_up["connected"] == terminals else None
        fleet.rss_connected = _rss_kib(fleet.broker.pid)
        done: list[dict] = []
        for at, down_for in sorted(restarts):
            fleet.wait_until(t0 + at)
            line(f"stopping the broker at {time.monotonic() - t0:.1f} s for {down_for:g} s")
            down, up = fleet.restart_broker(down_for)
            back = fleet.wait_until(t0 + duration + drain_timeout, lambda s: s["connected"] == terminals)
            done.append({"at_s": round(down - t0, 2), "down_s": round(up - down, 2), "up": up, "down": down,
                         "all_connected": bool(back and back["connected"] == terminals)})
        stages: list[dict] = []
        if fleet.releases is not None:
            fleet.wait_until(t0 + duration + drain_timeout, lambda s: s["connected"] == terminals)
            for version in fleet.releases:
                line(f"rolling out {version} at {time.monotonic() - t0:.1f} s")
                stages += fleet.roll_out(version, rollout_timeout)
                line(f"rollout {version}: " + ", ".join(f"{st.get('name', '-')} {st['outcome']} in "
                                                       f"{st['seconds']} s" for st in stages if st["version"] == version))
        fleet.wait_until(t0 + duration)
        line(f"{duration:g} s of events done; draining the outboxes")
        left = fleet.drain(drain_timeout)
        fleet.record()
        elapsed = time.monotonic() - t0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        hub_cpu = usage.ru_utime + usage.ru_stime - fleet.hub_cpu0
        broker_cpu = fleet.broker_cpu + _cpu_seconds(fleet.broker.pid) - fleet.broker_cpu0
        results = fleet.stop()
        acc, stored_at = account(fleet.out / "hub.db", results)
        acc["duplicates_dropped"] = fleet.hub.stats["duplicates"]
        rep["events"] = acc
        rep["events"]["terminals_not_drained"] = left
        rep["connects"] = _connects(results, t0, first_all, done)
        steady_end = done[0]["at_s"] if done else duration
        rep["hub"] = _hub(fleet, stored_at, t0, (first_all if first_all is not None else steady_end, steady_end))
        rep["broker"] = {"rss_idle_kib": fleet.rss_idle, "rss_connected_kib": fleet.rss_connected,
                         "rss_peak_kib": max((s["broker_rss_kib"] or 0) for s in fleet.timeline),
                         "rss_per_connection_kib": (round((fleet.rss_connected - fleet.rss_idle) / terminals, 1)
                                                    if fleet.rss_connected and fleet.rss_idle else None)}
        rep["terminal_errors"] = {"rejected_acks": sum(r["rejected_acks"] for r in results),
                                  "dropped_messages": sum(r["dropped_messages"] for r in results),
                                  "resends": sum(r["resends"] for r in results)}
        # The machine is shared: what each part cost, and how loaded the machine was, says more
        # than rates alone (the hub's CPU is this process's: its threads and the orchestrator's).
        rep["cpu"] = {"elapsed_s": round(elapsed, 1), "hub_s": round(hub_cpu, 1), "broker_s": round(broker_cpu, 1),
                      "workers_s": round(fleet.workers_cpu, 1),
                      "hub_ms_per_batch": round(1000 * hub_cpu / rep["hub"]["batches"], 2) if rep["hub"]["batches"] else None,
                      "loadavg_1m_end": round(os.getloadavg()[0], 1), "cores": os.cpu_count()}
        rep["timeline"] = fleet.timeline
        rep["ok"] = acc["exactly_once"] and left == 0 and all(r["all_connected"] for r in done)
        if fleet.releases is not None:
            rep["rollout"] = _rollout(fleet.releases, stages, results)
            rep["ok"] = rep["ok"] and rep["rollout"]["as_expected"]
        Path(report).write_text(json.dumps(rep, indent=1) + "\n")
        return rep
    finally:
        fleet.close()
        if scratch:
            shutil.rmtree(out, ignore_errors=True)


def _connects(results: list[dict], t0: float, first_all: float | None, restarts: list[dict]) -> dict:
    """Connects from the start, and each terminal's reconnection after each broker restart:
    seconds from the moment the broker listened again, and the connects in each second."""
    times = sorted(t for r in results for t in r["connect_times"])
    first_down = restarts[0]["down"] if restarts else float("inf")
    rep: dict = {"total": len(times), "terminals_connected": sum(1 for r in results if r["connects"]),
                 "all_connected_after_s": first_all,
                 "per_second_from_start": per_second([t for t in times if t < first_down], t0),
                 "broker_restarts": []}
    ends = [r["down"] for r in restarts[1:]] + [float("inf")]
    for restart, end in zip(restarts, ends):
        up, down = restart.pop("up"), restart.pop("down")
        firsts = [min((t for t in r["connect_times"] if down <= t < end), default=None) for r in results]
        back = [t - up for t in firsts if t is not None]
        hist = per_second([t for t in firsts if t is not None], up)
        restart.update({
            "reconnected": len(back),
            "all_reconnected_s": round(max(back), 2) if len(back) == len(results) else None,
            "reconnect_s": {"p50": _round(_percentile(back, 0.5)), "p90": _round(_percentile(back, 0.9)),
                            "max": _round(max(back, default=None))},
            "connects_per_second": hist, "peak_connects_per_s": max(hist, default=0)})
        rep["broker_restarts"].append(restart)
    return rep


def _hub(fleet: Fleet, stored_at: list[float], t0: float, steady: tuple[float, float]) -> dict:
    """Ingest at the hub: events stored per wall-clock second from the start; the mean over
    ``steady`` (seconds from the start: every terminal connected and sending, no restart)."""
    s = fleet.hub.stats
    wall0 = time.time() - (time.monotonic() - t0)
    hist = per_second(stored_at, wall0)
    lo, hi = int(steady[0]) + 1, int(steady[1])  # whole seconds inside the window
    sending = hist[lo:hi]
    return {"batches": s["batches"], "stored": s["stored"], "acks": s["acks"], "forged": s["forged"],
            "malformed": s["malformed"], "db_errors": s["db_errors"],
            "steady_window_s": [lo, hi],
            "events_per_s_mean": round(sum(sending) / max(1, len(sending)), 1),
            "events_per_s_peak": max(hist, default=0), "events_per_second": hist,
            "events_per_batch": round(s["stored"] / s["batches"], 2) if s["batches"] else None}


def _rollout(releases: tuple[str, str], stages: list[dict], results: list[dict]) -> dict:
    """The stages as timed, where every terminal ended up, and whether that is what should happen:
    the good release passes both stages and runs everywhere; the bad one is halted in the pilot
    (its terminals rolled back) and runs nowhere."""
    good, bad = releases
    running = Counter(r.get("version") for r in results)
    by = {v: [st for st in stages if st["version"] == v] for v in releases}
    expected = ([st.get("outcome") for st in by[good]] == ["passed", "passed"]
                and [st.get("outcome") for st in by[bad]] == ["halted"]
                and running == Counter({good: len(results)}))
    return {"good": good, "bad": bad, "stages": stages, "running": dict(running), "as_expected": expected}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)
