"""``gate-terminal sim hub``: run the provincial hub simulator against a broker until SIGTERM/SIGINT;
``gate-terminal sim cmd``: send one remote command to a terminal and print its answer.

The key set made by ``sim keys`` supplies the hub key (hub.pem), the root-signed trust list
(trust.envelope.json, published as is), the SM4 data keys (data_keys.json, wrapped to each
terminal's device key) and, registered by default, its own terminal: config.toml's
``[terminal] id`` with device.pub.hex. One line per batch, ack and query goes to stdout;
names and ID numbers only ever masked.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import tomllib
from collections import Counter
from pathlib import Path

from drivers.idnumber import valid_check
from terminal.core.staff import MAX_STAFF
from terminal.hub import wire
from terminal.commands.usage import UsageError
from terminal.crypto.keyfiles import KeyFileError, load_private_key
from terminal.crypto.sm2 import PublicKey, SM2Error
from terminal.core.trust import EnvelopeError


def add_parser(simsub) -> None:
    h = simsub.add_parser("hub", help="the provincial hub: ingest events, ack, answer card queries",
                          description="Consumes event batches on the shared subscription, stores them "
                                      "in SQLite and sends signed acks; answers card status queries; "
                                      "publishes the trust list, data keys, policy and time beacons.")
    h.add_argument("--broker", required=True, metavar="URL",
                   help="mqtts://host:port (or mqtt:// for a plain dev listener)")
    h.add_argument("--ca", type=Path, metavar="FILE", help="CA certificate of the broker")
    h.add_argument("--cert", type=Path, metavar="FILE", help="the hub's client certificate (CN hub)")
    h.add_argument("--key", type=Path, metavar="FILE", help="its private key")
    h.add_argument("--keys", type=Path, required=True, metavar="DIR", help="key set made by 'sim keys'")
    h.add_argument("--db", type=Path, metavar="FILE", help="event store (default DIR/hub.db)")
    h.add_argument("--prefix", default=wire.DEFAULT_PREFIX)
    h.add_argument("--group", required=True, metavar="SECRET",
                   help="shared-subscription group, the same for every hub instance: 16-64 characters of "
                        "A-Z a-z 0-9 _ -, kept secret (on Mosquitto whoever names it can join it); "
                        "make one with: python3 -c 'import secrets; print(secrets.token_hex(12))'")
    h.add_argument("--terminal", action="append", default=[], metavar="TID=DEVICE_PUB_HEX",
                   help="register another terminal (repeatable)")
    h.add_argument("--people", type=Path, metavar="FILE.json",
                   help='{"<id number>": {"name", "status", "flags", "nat_at", "nat_result", '
                        '"vax_doses", "valid_until"}}')
    h.add_argument("--policy", type=Path, metavar="FILE.json", help='venues to publish: {"<venue>": {fields}}')
    h.add_argument("--staff", type=Path, metavar="FILE.json",
                   help='staff, {"id_numbers": ["<18 characters>", ...]}: published as digests in the policy bundle')
    h.add_argument("--start-seq", type=int, metavar="N", help="ack nothing of a new terminal until seq N is held")
    h.add_argument("--time-interval", type=float, default=60.0, metavar="S", help="time beacon period (default 60)")
    r = h.add_argument_group("software releases (docs/protocol/updates.md)")
    r.add_argument("--releases", type=Path, metavar="DIR",
                   help="serve the bundles in DIR (gate-terminal-<version>.tar, from 'release build') as a "
                        "TUF repository over HTTPS; its metadata in DIR/tuf, role keys tuf-*.pem in --keys")
    r.add_argument("--repo-listen", default="127.0.0.1:8443", metavar="HOST:PORT")
    r.add_argument("--repo-cert", type=Path, metavar="FILE", help="the repository's server certificate")
    r.add_argument("--repo-key", type=Path, metavar="FILE", help="its key")
    r.add_argument("--rollout", metavar="VERSION", help="roll this release out: the --pilot terminals, then all")
    r.add_argument("--pilot", default="", metavar="TID,TID", help="the first stage's terminals (default: none)")
    r.add_argument("--max-failure", type=float, default=0.1, metavar="RATE",
                   help="a stage halts once this share of its terminals failed (default 0.1)")
    h.set_defaults(func=run_hub)


def _json_file(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"{what} {path}: {e}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{what} {path}: not a JSON object")
    return doc


def load_terminals(keys: Path, extra: list[str]) -> dict[str, PublicKey]:
    terminals = {}
    try:
        tid = tomllib.loads((keys / "config.toml").read_text())["terminal"]["id"]
        terminals[tid] = PublicKey.from_hex((keys / "device.pub.hex").read_text().strip())
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError, SM2Error) as e:
        raise UsageError(f"--keys {keys}: no terminal id and device key ({type(e).__name__}: {e})") from None
    for item in extra:
        tid, sep, hexkey = item.partition("=")
        try:
            if not sep or not tid or "/" in tid or "+" in tid or "#" in tid:
                raise ValueError
            terminals[tid] = PublicKey.from_hex(hexkey.strip())
        except (ValueError, SM2Error):
            raise UsageError(f"--terminal {item[:60]!r}: expected TID=DEVICE_PUB_HEX") from None
    return terminals


def _releases(args):
    """The release repository of --releases, brought up to date with its bundles; None without it."""
    if args.releases is None:
        if args.rollout:
            raise UsageError("--rollout needs --releases")
        return None
    if not (args.repo_cert and args.repo_key):
        raise UsageError("--releases needs --repo-cert and --repo-key (the repository is served over HTTPS)")
    host, _, port = args.repo_listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--repo-listen {args.repo_listen!r}: expected HOST:PORT")
    if not 0 < args.max_failure <= 1:
        raise UsageError("--max-failure must be above 0 and at most 1")
    from sim.tufrepo import ReleaseRepo, publish_bundles, role_keys
    from terminal.hub.wire import version_key
    try:
        if args.rollout:
            version_key(args.rollout)
        repo = ReleaseRepo(args.releases / "tuf", role_keys(args.keys))
        publish_bundles(repo, args.releases)
    except (OSError, ValueError, KeyFileError) as e:
        raise UsageError(f"--releases {args.releases}: {e}") from None
    if args.rollout and args.rollout not in repo.versions().values():
        raise UsageError(f"--rollout {args.rollout}: no gate-terminal-{args.rollout}.tar in {args.releases}")
    return repo


def run_hub(args) -> int:
    from sim.hub import HubSim
    try:
        tls = wire.parse_broker_url(args.broker, plain_anywhere=True).tls
    except ValueError as e:
        raise UsageError(f"--broker {e}") from None
    if tls and not (args.ca and args.cert and args.key):
        raise UsageError("an mqtts:// broker needs --ca, --cert and --key")
    try:
        hub_key = load_private_key(args.keys / "hub.pem")
        root_key = load_private_key(args.keys / "root.pem")
        trust = (args.keys / "trust.envelope.json").read_bytes()
        data_keys = {int(k): bytes.fromhex(v) for k, v in
                     _json_file(args.keys / "data_keys.json", "data keys")["data_keys"].items()}
    except (OSError, KeyFileError, KeyError, ValueError, AttributeError) as e:
        raise UsageError(f"--keys {args.keys}: {e}") from None
    terminals = load_terminals(args.keys, args.terminal)
    repo = _releases(args)
    people = _json_file(args.people, "--people") if args.people else {}
    policy = _json_file(args.policy, "--policy") if args.policy else None
    staff = _json_file(args.staff, "--staff").get("id_numbers") if args.staff else None
    if args.staff and (not isinstance(staff, list) or len(staff) > MAX_STAFF
                       or not all(isinstance(n, str) and valid_check(n) for n in staff)):
        raise UsageError(f"--staff {args.staff}: id_numbers is not a list of at most {MAX_STAFF} valid ID numbers")

    try:
        hub = HubSim(args.broker, args.ca, args.cert, args.key, hub_key=hub_key, root_key=root_key,
                     db_path=args.db or args.keys / "hub.db", prefix=args.prefix, terminals=terminals,
                     people=people, group=args.group, start_seq=args.start_seq, time_interval=args.time_interval,
                     on_line=lambda line: print(line, flush=True))
    except ValueError as e:  # a guessable --group, a hub.db without epochs
        raise UsageError(str(e)) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        hub.publish_trust(trust)  # retained; sent when the connection is up
    except EnvelopeError as e:
        raise UsageError(f"--keys {args.keys}: trust list: {e}") from None
    for tid in terminals:
        hub.publish_keys(tid, data_keys)
    if policy is not None or staff is not None:
        hub.publish_policy(policy or {}, staff=staff)
    hub.start()
    print(f"hub on {args.broker}: {len(terminals)} terminal(s), {len(people)} people; "
          f"SIGTERM or Ctrl-C stops", flush=True)
    server = None
    if repo is not None:
        from sim.rollout import StagePlan
        from sim.tufrepo import RepoServer
        host, _, port = args.repo_listen.rpartition(":")
        server = RepoServer(repo.directory, args.repo_cert, args.repo_key, host=host, port=int(port)).start()
        print(f"release repository {server.url} (terminals' [update] root: {repo.meta_dir / '1.root.json'}); "
              f"releases {', '.join(sorted(filter(None, repo.versions().values()))) or 'none'}", flush=True)
        if args.rollout:
            pilot = tuple(t for t in args.pilot.split(",") if t)
            hub.start_rollout(args.rollout, [StagePlan("pilot", tids=pilot, max_failure=args.max_failure),
                                             StagePlan("all", percent=100, max_failure=args.max_failure)])
    try:
        # The timestamp expires in a day (a freeze defence): sign a fresh one every hour.
        while not stop.wait(3600):
            if repo is not None:
                repo.refresh_timestamp()
    finally:
        if server is not None:
            server.stop()
        hub.stop()
    s = hub.stats
    print(f"hub stopped: {s['batches']} batches, {s['stored']} events stored, {s['duplicates']} duplicates, "
          f"{s['forged']} forged, {s['queries']} queries", flush=True)
    return 0


def add_cmd_parser(simsub) -> None:
    c = simsub.add_parser("cmd", help="send one remote command to a terminal and print its answer",
                          description="Connects as a hub identity, sends one command signed by the hub key to "
                                      "the terminal's cmd topic and prints its signed answer as JSON; for "
                                      "diagnostics, also the bundle (checked against the SM3 digest the "
                                      "answer names). Exit 0 for ok: true, 1 for a refusal, 2 for no answer.")
    c.add_argument("op", choices=wire.CMD_OPS)
    c.add_argument("--broker", required=True, metavar="URL",
                   help="mqtts://host:port (or mqtt:// for a plain dev listener)")
    c.add_argument("--ca", type=Path, metavar="FILE", help="CA certificate of the broker")
    c.add_argument("--cert", type=Path, metavar="FILE", help="a hub identity's client certificate")
    c.add_argument("--key", type=Path, metavar="FILE", help="its private key")
    c.add_argument("--keys", type=Path, required=True, metavar="DIR", help="key set made by 'sim keys'")
    c.add_argument("--prefix", default=wire.DEFAULT_PREFIX)
    c.add_argument("--tid", help="the terminal (default: the key set's)")
    c.add_argument("--terminal", action="append", default=[], metavar="TID=DEVICE_PUB_HEX",
                   help="another terminal's device key, to verify its answer (repeatable)")
    c.add_argument("--args", default="{}", metavar="JSON", help='the op\'s args, e.g. \'{"level": "DEBUG", "minutes": 10}\'')
    c.add_argument("--valid", type=int, default=300, metavar="S", help="not_after = now + S (default 300)")
    c.add_argument("--timeout", type=float, default=30.0, metavar="S", help="wait this long for the answer")
    c.add_argument("--out", type=Path, metavar="FILE", help="diagnostics: write the bundle here")
    c.set_defaults(func=run_cmd)


def run_cmd(args) -> int:
    import time
    import uuid

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from sim.hub_commands import CommandDesk
    try:
        tls, host, port = wire.parse_broker_url(args.broker, plain_anywhere=True)
        cmd_args = json.loads(args.args)
        if not isinstance(cmd_args, dict):
            raise ValueError("--args must be a JSON object")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if tls and not (args.ca and args.cert and args.key):
        raise UsageError("an mqtts:// broker needs --ca, --cert and --key")
    try:
        hub_key = load_private_key(args.keys / "hub.pem")
    except (OSError, KeyFileError) as e:
        raise UsageError(f"--keys {args.keys}: {e}") from None
    terminals = load_terminals(args.keys, args.terminal)
    tid = args.tid or next(iter(terminals))
    if tid not in terminals:
        raise UsageError(f"--tid {tid}: no device key known for it (--terminal TID=DEVICE_PUB_HEX)")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"hub-cmd-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    if tls:
        client.tls_set(ca_certs=str(args.ca), certfile=str(args.cert), keyfile=str(args.key))
    desk = CommandDesk(client, args.prefix, hub_key, terminals, Counter(), lambda line: None)
    topics, ready = wire.Topics(args.prefix, tid), threading.Event()
    client.on_connect = lambda c, u, f, rc, p: None if rc.is_failure else c.subscribe(
        [(topics.cmd_result, 1), (topics.diag, 1)])
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = lambda c, u, msg: desk.take(msg.topic, msg.payload)
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise UsageError(f"--broker {args.broker}: {e}") from None
    client.loop_start()
    worker = threading.Thread(target=desk.run, name="commands", daemon=True)
    worker.start()
    try:
        if not ready.wait(args.timeout):
            raise UsageError(f"--broker {args.broker}: not connected and subscribed within {args.timeout:g} s")
        cid = desk.send_command(tid, args.op, cmd_args, not_after=int(time.time()) + args.valid)
        r = desk.result(cid, args.timeout)
        if r is None:
            print(json.dumps({"id": cid, "answer": None}), flush=True)
            return 2
        print(json.dumps({"id": r.id, "ok": r.ok, "detail": r.detail}, ensure_ascii=False), flush=True)
        if r.ok and args.op == "diagnostics":
            end = time.monotonic() + args.timeout
            while (bundle := desk.diagnostics(cid)) is None and time.monotonic() < end:
                time.sleep(0.05)
            if bundle is None:
                print("diagnostics: the bundle did not arrive whole", file=sys.stderr)
                return 2
            if args.out:
                args.out.write_bytes(bundle)
            else:
                print(bundle.decode(), flush=True)
        return 0 if r.ok else 1
    finally:
        desk.stop()
        client.disconnect()
        client.loop_stop()
