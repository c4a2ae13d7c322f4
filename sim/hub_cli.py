"""``gate-terminal sim hub``: run the provincial hub simulator against a broker until SIGTERM/SIGINT.

The key set made by ``sim keys`` supplies the hub key (hub.pem), the root-signed trust list
(trust.envelope.json, published as is), the SM4 data keys (data_keys.json, wrapped to each
terminal's device key) and, registered by default, its own terminal: config.toml's
``[terminal] id`` with device.pub.hex. One line per batch, ack and query goes to stdout;
names and ID numbers only ever masked.
"""
from __future__ import annotations

import json
import signal
import threading
import tomllib
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
    try:
        stop.wait()
    finally:
        hub.stop()
    s = hub.stats
    print(f"hub stopped: {s['batches']} batches, {s['stored']} events stored, {s['duplicates']} duplicates, "
          f"{s['forged']} forged, {s['queries']} queries", flush=True)
    return 0
