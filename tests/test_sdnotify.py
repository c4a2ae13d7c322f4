"""The notify protocol against a real AF_UNIX datagram socket standing in for systemd."""
from __future__ import annotations

import os
import socket
import uuid

import pytest

from terminal.ops.sdnotify import Notifier, Watchdog, credential_path, is_credential


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET, as PID 1 holds it."""

    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def messages(self) -> list[dict[str, str]]:
        """Every datagram received so far, each as its KEY=VALUE assignments."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(4096)
                out.append(dict(line.split("=", 1) for line in data.decode().split("\n")))
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(5)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def systemd(request, tmp_path):
    if request.param == "path":
        address = str(tmp_path / "notify")
        env_value = address
    else:
        name = f"gate-terminal-test-{uuid.uuid4().hex}"
        address = "\0" + name
        env_value = "@" + name
    fake = FakeSystemd(address)
    fake.env = {"NOTIFY_SOCKET": env_value, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    yield fake
    fake.close()


@pytest.fixture
def notifier(systemd):
    n = Notifier(systemd.env)
    yield n
    n.close()


@pytest.fixture
def clock(mocker):
    """The watchdog's monotonic clock: time passes when the test says."""
    return mocker.Mock(return_value=1000.0)


def test_lifecycle_ready_status_watchdog_stopping(systemd):
    n = Notifier(systemd.env)
    assert n.enabled and n.watchdog_interval() == 15.0
    assert systemd.messages() == []            # nothing before setup is done
    assert n.ready("deciding: camera ok,\nid_card ok")
    assert n.status("outbox 3")
    assert n.watchdog()
    assert n.stopping("finishing 2 presentations")
    n.close()
    assert systemd.messages() == [
        {"READY": "1", "STATUS": "deciding: camera ok, id_card ok"},   # one line, always
        {"STATUS": "outbox 3"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1", "STATUS": "finishing 2 presentations"},
    ]


def test_watchdog_pings_only_while_every_loop_progresses(systemd, notifier, clock):
    wd = Watchdog(notifier, stall_after=20, clock=clock)
    for name in ("decide", "camera", "store"):
        wd.watch(name)
    pings = 0
    for _ in range(10):                        # 50 s of a healthy daemon, ticking every 5 s
        clock.return_value += 5
        for name in ("decide", "camera", "store"):
            wd.progress(name)
        pings += wd.tick()
    assert pings == 4                          # every 15 s (half of WatchdogSec=30)
    assert systemd.messages() == [{"WATCHDOG": "1"}] * 4

    for _ in range(8):                         # the camera loop is wedged in a driver call
        clock.return_value += 5
        wd.progress("decide")
        wd.progress("store")
        wd.tick()
    msgs = systemd.messages()
    assert wd.stalled() == ["camera"]
    # pings go on until the stall is seen (20 s), then stop; systemd is told why
    assert msgs[-1] == {"STATUS": "stalled: camera"}
    assert {"WATCHDOG": "1"} not in msgs[msgs.index({"STATUS": "stalled: camera"}):]

    clock.return_value += 5                      # the driver call returns: pings resume
    for name in ("decide", "camera", "store"):
        wd.progress(name)
    assert wd.tick() and systemd.messages() == [{"WATCHDOG": "1"}]


def test_stuck_decide_loop_means_no_ping(systemd, notifier, clock):
    wd = Watchdog(notifier, stall_after=20, clock=clock)
    wd.watch("decide")
    clock.return_value += 21                     # tick is called, but decide never progressed
    assert not wd.tick()
    assert wd.stalled() == ["decide"]
    assert systemd.messages() == [{"STATUS": "stalled: decide"}]


def test_unwatched_loop_is_not_expected(notifier, clock):
    wd = Watchdog(notifier, stall_after=20, clock=clock)
    wd.watch("decide")
    wd.watch("id_card")
    wd.unwatch("id_card")                      # stopped on purpose (shutdown)
    clock.return_value += 30
    wd.progress("decide")
    assert wd.tick() and wd.stalled() == []


def test_no_watchdog_for_another_pid(systemd, clock):
    env = dict(systemd.env, WATCHDOG_PID=str(os.getpid() + 1))
    n = Notifier(env)
    assert n.watchdog_interval() is None
    wd = Watchdog(n, clock=clock)
    wd.watch("decide")
    assert not wd.tick()
    assert systemd.messages() == []


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"},
                                 {"WATCHDOG_USEC": "garbage"}])
def test_noop_outside_systemd(env, clock):
    n = Notifier(env)
    assert not n.enabled
    assert n.watchdog_interval() is None
    assert not n.ready("x") and not n.status("x") and not n.watchdog() and not n.stopping()
    wd = Watchdog(n, clock=clock)
    wd.watch("decide")
    assert not wd.tick()


def test_systemd_gone_is_logged_not_raised(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.enabled
    assert not n.ready()
    assert not n.watchdog()
    n.close()
    assert [r.message for r in caplog.records if "cannot notify" in r.message] == [
        f"cannot notify systemd at {tmp_path / 'nobody-listens'}: No such file or directory"]


def test_credentials_directory_wins_over_configured_path(tmp_path):
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "device.pem").write_text("key")
    configured = tmp_path / "etc" / "device.pem"
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert credential_path("device.pem", configured, env) == creds / "device.pem"
    assert credential_path("client.key", configured, env) == configured   # not passed: configured
    assert credential_path("device.pem", configured, {}) == configured     # not under systemd
    assert credential_path("client.key", None, env) is None
    assert is_credential(creds / "device.pem", env)
    assert not is_credential(configured, env)
    assert not is_credential(creds / "device.pem", {})
