"""``gate-terminal run``: the daemon at the door, until SIGTERM or SIGINT."""
from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from terminal import config as cfgmod
from terminal.commands.usage import UsageError

log = logging.getLogger(__name__)

# The exit status that asks systemd for a restart into a newly switched release (any failure
# status restarts under Restart=on-failure; this one says why in the journal).
EXIT_RESTART = 75


def register(sub) -> None:
    p = sub.add_parser("run", help="run the terminal (the daemon) until SIGTERM",
                       description="Open the store, trust state and every configured device, then decide "
                                   "every presentation until SIGTERM or SIGINT.")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--state-dir", type=Path, help="state directory instead of the configured one")
    p.set_defaults(func=run)


def run(args) -> int:
    from terminal.crypto.keyfiles import KeyFileError
    from terminal.daemon import Daemon
    from terminal.ops.sdnotify import Notifier
    from terminal.state.store import StoreError
    from terminal.verifier import SetupError

    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    stop, hup = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: hup.set())
    notifier = Notifier()
    try:
        cfg = cfgmod.load(args.config)
        daemon = Daemon(cfg, state_dir=args.state_dir, notifier=notifier)
        daemon.open()
    except (cfgmod.ConfigError, SetupError, StoreError, KeyFileError) as e:
        raise UsageError(str(e)) from None
    daemon.start()  # sends READY=1 once everything is open
    while not stop.wait(0.2):
        if daemon.restart_requested.is_set():
            break
        if hup.is_set():
            hup.clear()
            notifier.send("RELOADING=1")
            try:
                daemon.reload(cfgmod.load(args.config))
            except cfgmod.ConfigError as e:  # a bad edit must not stop a working terminal
                log.error("reload refused, keeping the running configuration: %s", e)
            notifier.ready(daemon.summary())
    log.info("stopping: finishing the presentations in hand")
    notifier.stopping("finishing the presentations in hand")
    daemon.stop()
    if daemon.restart_requested.is_set():
        log.warning("exiting %d for systemd to start the new release", EXIT_RESTART)
        return EXIT_RESTART
    return 0
