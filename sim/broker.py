"""A real Mosquitto for tests: TLS with client certificates, ACL by certificate identity.

Each :class:`Broker` owns a temp directory holding a test CA (made with the openssl command
line, EC P-256), a server certificate for 127.0.0.1/localhost, the client certificates asked
for (CN = terminal id, or a hub identity: ``hub``, ``hub-2`` … ``hub-8``), ``mosquitto.conf``,
``acl``, the persistence file and the log. The TLS listener requires a client certificate, takes
its CN as the username AND as the client id (``use_username_as_clientid``: a terminal asking for
another's client id gets its own, so it cannot take over that terminal's session), and the ACL
(docs/protocol/hub.md) is::

    user hub                                    # each hub identity: everything under the prefix
    topic readwrite {prefix}/#                  # (the same for hub-2 ... hub-8)
    pattern write {prefix}/t/%u/events          # every identity (a terminal): its own topics
    pattern write {prefix}/t/%u/state
    pattern write {prefix}/t/%u/query
    pattern write {prefix}/t/%u/update         # software update results
    pattern write {prefix}/t/%u/cmd/result     # remote command answers
    pattern write {prefix}/t/%u/diag           # diagnostics bundles
    pattern read  {prefix}/t/%u/ack
    pattern read  {prefix}/t/%u/reply
    pattern read  {prefix}/t/%u/keys
    pattern read  {prefix}/t/%u/cmd
    pattern read  {prefix}/trust  |  {prefix}/policy  |  {prefix}/time  |  {prefix}/rollout

(``topic`` lines before any ``user`` line would bind anonymous clients only, so the broadcast
topics are ``pattern`` lines; Mosquitto warns that they hold no %u, harmlessly.)

How Mosquitto 2.0.11 applies it (each point pinned by tests/test_broker.py):
- SUBSCRIBE is never refused by ``acl_file`` (its subscribe check is unimplemented and says
  yes: wildcards and ``$share/…`` included, ``deny`` lines or not); instead every delivery,
  retained messages included, is checked against ``read`` for the concrete topic and silently
  skipped if denied. So a terminal subscribing ``{prefix}/#`` or ``{prefix}/t/+/ack`` gets SUBACK 0x01 and then
  only what it may read.
- Shared subscriptions are delivered round-robin inside a group BEFORE that read check: a
  terminal that joins ``$share/<the hub's group>/{prefix}/t/+/events`` reads nothing, but every
  message dealt to it is dropped — it black-holes its share of every terminal's batches
  (delivery stays at-least-once: unacked batches are resent, but throughput suffers). With this
  broker the hub's share group is hub configuration with no default, a secret among hub
  instances (a group nobody else can name cannot be joined); a production broker (EMQX) checks
  subscribe ACLs.
- The client id is the CN: asking for another one is not refused, the broker replaces it.
- A refused PUBLISH is dropped; an MQTT 5 client at QoS 1 gets PUBACK 0x87 (not authorised),
  a QoS 0 one nothing. A will is checked like a publish when it fires (not at CONNECT).
- ``pattern`` lines apply to every user, the hub included (harmless: the hub may do all).

Persistence is on, so QoS 1 sessions and retained messages survive :meth:`restart` (which
stops with SIGTERM: Mosquitto saves on exit). Mosquitto 2.0 saves only sessions opened with
``clean_start=False`` (a session expiry interval alone is not enough; paho's default
"clean on first connect only" is therefore lost on a broker restart). :meth:`kill` (SIGKILL) loses whatever changed
since the last autosave (``autosave_interval`` seconds), as a crashed broker would.
No Mosquitto outlives its owner: a finalizer (run at interpreter exit too) kills it, and the
child asks the kernel for SIGTERM when the thread that started it dies (PR_SET_PDEATHSIG),
which covers a SIGKILLed test run. Start brokers from a long-lived thread (the main one).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from terminal.hub.wire import DEFAULT_PREFIX

HUB_IDENTITY = "hub"
# Each hub consumer (and each hub-side tool) connects with a certificate of its own: the client
# id is bound to the CN, so two connections under one identity would take each other's session.
HUB_IDENTITIES = (HUB_IDENTITY, *(f"{HUB_IDENTITY}-{i}" for i in range(2, 9)))
READY_TIMEOUT = 10.0
# Mosquitto's ``message_size_limit``: a larger PUBLISH is not forwarded. Well above the largest
# genuine message (a 200-event batch is ~150 KB, the terminal's inbound limits at most 256 KiB):
# a refused batch would be resent, and refused, forever. (2.0.11 answers a QoS 1 one with a
# PUBACK 0x95 that paho 2.2 finds malformed and drops the connection over; QoS 0: silence.)
MESSAGE_SIZE_LIMIT = 1 << 20


class BrokerError(RuntimeError):
    pass


def find_mosquitto() -> str:
    exe = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if exe is None:
        raise BrokerError("mosquitto not found (apt-get install mosquitto)")
    return exe


def _openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BrokerError(f"openssl {args[0]} failed: {r.stderr.strip()[-400:]}")


class CertAuthority:
    """A throw-away CA in ``directory`` issuing EC P-256 server and client certificates."""

    def __init__(self, directory: Path, name: str = "gate-terminal test CA") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cert = self.dir / "ca.crt"
        self.key = self.dir / "ca.key"
        self._lock = threading.Lock()
        if not self.cert.exists():
            (self.dir / "ca.cnf").write_text(
                "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n"
                "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier = hash\n")
            _openssl("req", "-x509", "-config", "ca.cnf", "-extensions", "ca", "-newkey", "ec",
                     "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key",
                     "-out", "ca.crt", "-days", "3650", "-subj", f"/CN={name}", cwd=self.dir)
            self.key.chmod(0o600)

    def issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        """(cert_path, key_path) for ``cn``, made once; the key file is mode 0600."""
        if not cn or any(c in cn for c in "/\\\0\n,+=\"<>;#") or cn.startswith("."):
            raise ValueError(f"unusable certificate CN {cn!r}")
        cert, key = self.dir / f"{cn}.crt", self.dir / f"{cn}.key"
        with self._lock:
            if cert.exists():
                return cert, key
            ext = (f"[x]\nbasicConstraints = critical,CA:FALSE\n"
                   f"keyUsage = critical,digitalSignature,keyAgreement\n"
                   f"extendedKeyUsage = {'serverAuth' if server else 'clientAuth'}\n"
                   + ("subjectAltName = IP:127.0.0.1,DNS:localhost\n" if server else ""))
            (self.dir / f"{cn}.ext").write_text(ext)
            _openssl("req", "-new", "-config", "ca.cnf", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key.name, "-out", f"{cn}.csr",
                     "-subj", f"/CN={cn}", cwd=self.dir)
            key.chmod(0o600)
            _openssl("x509", "-req", "-in", f"{cn}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                     "-set_serial", "0x" + secrets.token_hex(16), "-days", "825",
                     "-extfile", f"{cn}.ext", "-extensions", "x", "-out", cert.name, cwd=self.dir)
            (self.dir / f"{cn}.csr").unlink()
            (self.dir / f"{cn}.ext").unlink()
            return cert, key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Proc:
    """The live process, outside the Broker so the finalizer can reach it without the Broker."""

    def __init__(self) -> None:
        self.popen: subprocess.Popen | None = None

    def kill(self) -> None:
        p, self.popen = self.popen, None
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()


def acl_text(prefix: str) -> str:
    return "\n".join([
        *(line for hub in HUB_IDENTITIES for line in (f"user {hub}", f"topic readwrite {prefix}/#", "")),
        *(f"pattern write {prefix}/t/%u/{leaf}" for leaf in ("events", "state", "query", "update", "cmd/result",
                                                            "diag")),
        *(f"pattern read {prefix}/t/%u/{leaf}" for leaf in ("ack", "reply", "keys", "cmd")),
        *(f"pattern read {prefix}/{leaf}" for leaf in ("trust", "policy", "time", "rollout")),
        ""])


class Broker:
    """One Mosquitto on free loopback ports; ``with Broker() as b: ... b.url, b.ca, b.client_cert(tid)``."""

    def __init__(self, *, prefix: str = DEFAULT_PREFIX, workdir: Path | None = None,
                 autosave_interval: int = 60, max_queued_messages: int = 10000,
                 verbose_log: bool = False, pki: CertAuthority | None = None) -> None:
        """``pki``: another Broker's CA, for the nodes of one cluster (clients trust one CA)."""
        self.prefix = prefix
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="mosq-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.exe = find_mosquitto()
        self.pki = pki or CertAuthority(self.workdir / "pki")
        self.server_cert, self.server_key = self.pki.issue("localhost", server=True)
        self._probe_cert = self.pki.issue("_probe")  # no ACL line names it: it may do nothing
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self.acl_path = self.workdir / "acl"
        self._autosave = autosave_interval
        self._max_queued = max_queued_messages
        self._verbose = verbose_log
        self._proc = _Proc()
        self._started_once = False
        self._finalizer = weakref.finalize(self, self._cleanup, self._proc, self.workdir, self._own_dir)

    # --- addresses and credentials --------------------------------------------------

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    @property
    def ca(self) -> Path:
        return self.pki.cert

    def client_cert(self, cn: str) -> tuple[Path, Path]:
        """(cert_path, key_path) of a client certificate with CN ``cn`` (a tid, or one of HUB_IDENTITIES)."""
        return self.pki.issue(cn)

    @property
    def running(self) -> bool:
        p = self._proc.popen
        return p is not None and p.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.popen.pid if self.running else None

    # --- lifecycle ------------------------------------------------------------------

    def _write_config(self) -> None:
        self.acl_path.write_text(acl_text(self.prefix))
        log_types = ["all"] if self._verbose else ["error", "warning", "notice", "information"]
        lines = [
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",  # as root, 2.0 would switch to "mosquitto"
            "per_listener_settings true",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            f"autosave_interval {self._autosave}",
            f"max_queued_messages {self._max_queued}",
            f"message_size_limit {MESSAGE_SIZE_LIMIT}",
            "set_tcp_nodelay true",
            "log_dest file " + str(self.log_path),
            *(f"log_type {t}" for t in log_types),
            "log_timestamp_format %H:%M:%S",
            "",
            f"listener {self.port} {self.host}",
            f"cafile {self.pki.cert}",
            f"certfile {self.server_cert}",
            f"keyfile {self.server_key}",
            "tls_version tlsv1.2",
            "require_certificate true",
            "use_identity_as_username true",
            "use_username_as_clientid true",  # the client id is the CN: no session takeover
            f"acl_file {self.acl_path}",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self) -> Broker:
        if self.running:
            return self
        attempt = 1
        while True:
            try:
                return self._start()
            except BrokerError as e:
                # The free port may have been taken between asking and binding: pick another,
                # unless clients already know this port (a restart must keep it).
                if self._started_once or "in use" not in str(e) or attempt == 3:
                    raise
            attempt += 1
            self.port = _free_port()

    def _start(self) -> Broker:
        self._write_config()
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.workdir / "stderr.log", "ab") as err:
            self._proc.popen = subprocess.Popen(
                [self.exe, "-c", str(self.conf_path)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_set_pdeathsig, close_fds=True)
        try:
            self._wait_ready(log_start)
        except BaseException:
            self._proc.kill()
            raise
        self._started_once = True
        return self

    def _wait_ready(self, log_start: int) -> None:
        """Until an MQTT CONNECT over TLS with the probe certificate gets a CONNACK."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            p = self._proc.popen
            if p is None or p.poll() is not None:
                raise BrokerError(f"mosquitto exited at start: {self._log_tail(log_start)}")
            if self._probe():
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto not ready after {READY_TIMEOUT}s: {self._log_tail(log_start)}")
            time.sleep(0.02)

    def _probe(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki.cert))
        ctx.load_cert_chain(*map(str, self._probe_cert))
        # CONNECT, MQTT 3.1.1, clean session, keepalive 5, client id "_probe"
        connect = bytes([0x10, 18, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 5, 0, 6]) + b"_probe"
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as raw, \
                    ctx.wrap_socket(raw, server_hostname=self.host) as s:
                s.sendall(connect)
                ok = s.recv(4)[:1] == b"\x20"
                if ok:
                    s.sendall(b"\xe0\x00")  # DISCONNECT, so no will and no "closed" log noise
                return ok
        except (OSError, ssl.SSLError):
            return False

    def _log_tail(self, start: int) -> str:
        text = ""
        for f in (self.log_path, self.workdir / "stderr.log"):
            if f.exists():
                with open(f, "rb") as fh:
                    fh.seek(start if f == self.log_path else 0)
                    text += fh.read().decode(errors="replace")
        return text.strip()[-600:] or "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file) and wait; SIGKILL if it hangs."""
        p = self._proc.popen
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._proc.popen = None

    def kill(self) -> None:
        """SIGKILL: a crash; nothing saved since the last autosave."""
        self._proc.kill()

    def restart(self) -> Broker:
        """Stop and start again on the same port with the same files."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temp directory (if this Broker made it)."""
        self.stop()
        self._finalizer()

    @staticmethod
    def _cleanup(proc: _Proc, workdir: Path, own_dir: bool) -> None:
        proc.kill()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Broker({self.url}, {'running' if self.running else 'stopped'}, log={self.log_path})"
