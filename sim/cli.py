"""``gate-terminal sim …``: the platform and hardware simulator (development key sets, tokens)."""
from __future__ import annotations

import time
from pathlib import Path

from drivers.idnumber import valid_check
from terminal.commands.usage import UsageError
from terminal.crypto.keyfiles import KeyFileError
from terminal.core.policy import VENUES

LEVELS = ("clean", "mild", "moderate", "hard")
MAX_RATE = 600   # arrivals per minute: a bound on the input; the lane itself serves what it can


def register(sub) -> None:
    p = sub.add_parser("sim", help="simulator: key sets, tokens")
    simsub = p.add_subparsers(dest="sim_command", required=True, metavar="SIMCOMMAND")

    k = simsub.add_parser("keys", help="make a development key set, signed trust list and config.toml")
    k.add_argument("outdir", type=Path)
    k.add_argument("--venue", default="mall", metavar="TYPE",
                   help=f"venue type written into config.toml: {', '.join(VENUES)} (default mall)")
    k.add_argument("--id", dest="terminal_id", default="370102-H0001-01", help="terminal id")
    k.add_argument("--force", action="store_true", help="replace an existing key set")
    k.set_defaults(func=run_keys)

    i = simsub.add_parser("issue", help="mint a token as the health-code app shows it")
    i.add_argument("--keys", required=True, type=Path, help="key set made by 'sim keys'")
    i.add_argument("--status", choices=("green", "yellow", "red"), default="green")
    i.add_argument("--star", action="store_true", help="itinerary through a risk area")
    i.add_argument("--close-contact", action="store_true")
    i.add_argument("--nat", choices=("negative", "positive", "pending", "none"), default="negative",
                   help="last nucleic-acid result (none: no sample on record)")
    i.add_argument("--nat-hours-ago", type=float, default=12.0, metavar="H")
    i.add_argument("--vax", type=int, default=3, choices=range(10), metavar="DOSES")
    i.add_argument("--iat", type=int, metavar="UNIX", help="issued-at (default: now)")
    i.add_argument("--ttl", type=int, default=60, help="seconds (default 60)")
    i.add_argument("--dkid", type=int, help="data key id (default: the lowest in data_keys.json)")
    i.add_argument("--name")
    i.add_argument("--id", dest="id_number", help="18-character resident ID number")
    i.set_defaults(func=run_issue)

    q = simsub.add_parser("staff-qr", help="mint a staff QR code, signed by the hub key (docs/protocol/staff.md)")
    q.add_argument("--keys", required=True, type=Path, help="key set made by 'sim keys' (its hub.pem signs)")
    q.add_argument("--sid", required=True, help="the staff member's id at the hub: 1-32 of A-Z a-z 0-9 . _ -")
    q.add_argument("--ttl", type=int, default=30, help="seconds, 1-300 (default 30)")
    q.add_argument("--iat", type=int, metavar="UNIX", help="issued-at (default: now)")
    q.set_defaults(func=run_staff_qr)

    from sim.hub_cli import add_cmd_parser, add_parser as add_hub
    add_hub(simsub)
    add_cmd_parser(simsub)

    r = simsub.add_parser("reader", help="a simulated card reader on its own, for `card read`",
                          description="Serves a virtual card reader holding a card on a pseudo-terminal (or a TCP "
                                      "port), prints its port on the first line and runs until Ctrl-C or SIGTERM: "
                                      "`gate-terminal card read --port PORT` then reads it through the real driver.")
    r.add_argument("--kind", choices=("id", "ss"), default="id",
                   help="id: the ID-card SAM module; ss: the social-security card reader (default id)")
    r.add_argument("--line", choices=("pty", "tcp"), default="pty",
                   help="pty: a symlink to a pseudo-terminal; tcp: socket://127.0.0.1:PORT (default pty)")
    r.add_argument("--card", choices=("resident", "J", "I", "none"), default="resident",
                   help="the card on it (id reader): a resident ID card, a residence permit (J), a foreign "
                        "permanent resident card (I), or none")
    r.set_defaults(func=run_reader)

    sc = simsub.add_parser("scanner", help="a simulated 2D scan engine on a pty or TCP port, for 'scanner read'",
                           description="Serves a virtual scan engine (serial mode) and prints its URL. Each line "
                                       "typed on stdin is held under it as a code for --hold seconds; with --keys "
                                       "an empty line (or every --every seconds) a fresh green health code. "
                                       "Runs until Ctrl-C / SIGTERM.")
    sc.add_argument("--kind", choices=("pty", "tcp"), default="pty")
    sc.add_argument("--prefix", default="", metavar="P", help="sent before each code")
    sc.add_argument("--suffix", choices=("cr", "lf", "crlf"), default="cr")
    sc.add_argument("--repeat", type=float, metavar="S", help="resend a code in view every S s (default: once)")
    sc.add_argument("--hold", type=float, default=1.0, metavar="S", help="how long each code stays in view")
    sc.add_argument("--decode-delay", type=float, default=0.0, metavar="S", help="the engine's own decode time")
    sc.add_argument("--banner", help="power-on text sent before the first code after each connection")
    sc.add_argument("--garbage", default="", metavar="HEX", help="noise bytes sent before every code")
    sc.add_argument("--chunk", type=int, default=0, metavar="N", help="write codes N bytes at a time")
    sc.add_argument("--chunk-delay", type=float, default=0.0, metavar="S", help="pause between those writes")
    sc.add_argument("--keys", type=Path, help="key set made by 'sim keys': mint fresh green codes")
    sc.add_argument("--every", type=float, metavar="S", help="with --keys: a fresh code every S s")
    sc.set_defaults(func=run_scanner)

    d = simsub.add_parser("demo", help="the whole terminal on simulated hardware, with a crowd",
                          description="Starts the real daemon against simulated hardware (virtual camera, "
                                      "ID-card and social-security readers and gate relay on pseudo-"
                                      "terminals, PNG panels), sends a crowd through and checks every "
                                      "decision against ground truth. Needs no broker and no hardware.")
    d.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds of arrivals (default 60)")
    d.add_argument("--venue", choices=VENUES, default="hospital")
    d.add_argument("--rate", type=float, default=20.0, metavar="PER_MIN",
                   help=f"arrivals per minute, at most {MAX_RATE} (default 20); one lane serves one person "
                        "at a time, so above what it serves people queue (the summary says how fast it served)")
    d.add_argument("--camera", choices=tuple(LEVELS), default="mild", help="how hard the camera has it")
    d.add_argument("--seed", type=int, help="make the crowd repeatable")
    d.add_argument("--out", type=Path, default=Path("demo-out"),
                   help="keys, state and screens: a new or empty directory, or an earlier demo's "
                        "(only the demo's own files there are replaced)")
    d.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report")
    d.add_argument("--scanner", action="store_true",
                   help="the door has a 2D scan engine too: about half the people showing a code use it")
    hub = d.add_mutually_exclusive_group()
    hub.add_argument("--hub", action="store_true",
                     help="also run a Mosquitto (TLS) and the hub simulator: events sync, cards are answered")
    hub.add_argument("--config", type=Path, metavar="FILE",
                     help="a terminal config naming an outside broker and hub (beside it: a 'sim keys' set); "
                          "the demo starts no hub of its own")
    d.set_defaults(func=run_demo)

    f = simsub.add_parser("fleet", help="N simulated terminals against one Mosquitto and the hub simulator",
                          description="Runs N lightweight terminals (each the real store, outbox and hub link "
                                      "with its own TLS certificate and device key; synthetic decisions "
                                      "instead of a camera) in a few worker processes against a Mosquitto "
                                      "and the hub simulator it starts, then writes a JSON report: events "
                                      "sent and held at the hub (exactly once by tid, epoch, seq), connects "
                                      "and reconnect times, hub ingest, the broker's memory.")
    f.add_argument("--terminals", type=int, required=True, metavar="N")
    f.add_argument("--duration", type=float, required=True, metavar="S", help="seconds of events")
    f.add_argument("--report", type=Path, required=True, metavar="FILE", help="where the JSON report goes")
    f.add_argument("--rate", type=float, default=12.0, metavar="PER_MIN",
                   help="decisions per minute per terminal (default 12)")
    f.add_argument("--ramp", type=float, metavar="S",
                   help="links start spread over S seconds (default: N/100, at most half the duration)")
    f.add_argument("--restart-broker-at", type=float, metavar="S",
                   help="restart the broker S seconds in and measure the reconnections")
    f.add_argument("--broker-down", type=float, default=0.0, metavar="S",
                   help="with --restart-broker-at: keep the broker down S seconds (default 0: a restart)")
    f.add_argument("--rollout", metavar="GOOD_DIR,BAD_DIR",
                   help="also roll out two releases (each DIR holding one gate-terminal-<version>.tar from "
                        "'gate-terminal release build'), pilot tenth then all: the good one must reach "
                        "every terminal, the bad one (its health window fails) be halted in the pilot")
    f.add_argument("--rollout-timeout", type=float, default=300.0, metavar="S",
                   help="how long each rollout may take before it counts as failed (default 300)")
    f.add_argument("--workers", type=int, metavar="W",
                   help="worker processes (default and least: one per 80 terminals; paho's select() "
                        "takes no descriptor above 1023)")
    f.add_argument("--drain-timeout", type=float, default=120.0, metavar="S",
                   help="how long the outboxes may take to empty after the events stop (default 120)")
    f.add_argument("--ack-timeout", type=float, default=15.0, metavar="S",
                   help="how long a terminal waits for the hub's ack before it sends a batch again "
                        "(default 15, the terminal's own)")
    f.add_argument("--out", type=Path, metavar="DIR",
                   help="keep the terminals, broker and hub files in DIR (new or empty; default: a "
                        "temporary directory, removed)")
    f.add_argument("--seed", type=int, help="make the events repeatable")
    f.set_defaults(func=run_fleet)


def run_demo(args) -> int:
    from sim.demo import NotDemoDir, run_demo as demo
    if args.duration <= 0:
        raise UsageError("--duration must be positive")
    if not 0 < args.rate <= MAX_RATE:
        raise UsageError(f"--rate must be above 0 and at most {MAX_RATE} arrivals per minute "
                         "(one lane: who arrives while it is busy waits in line)")
    if args.config is not None:
        from terminal import config as cfgmod
        try:
            cfg = cfgmod.load(args.config)
        except cfgmod.ConfigError as e:
            raise UsageError(str(e)) from None
        if not cfg.hub.broker:
            raise UsageError(f"{args.config}: no [hub] broker: nothing to run the demo against")
        if not (args.config.parent / "issuer.pem").exists():
            raise UsageError(f"{args.config.parent}: no issuer.pem beside the config (a 'sim keys' set)")
    try:
        res = demo(out=args.out, duration=args.duration, venue=args.venue, rate=args.rate, level=args.camera,
                   seed=args.seed, report=args.report, hub=args.hub, config=args.config, scanner=args.scanner)
    except NotDemoDir as e:
        raise UsageError(str(e)) from None
    return 0 if res["agreement"] == 1.0 else 1


def run_reader(args) -> int:
    import signal
    import threading

    from sim.serial_endpoint import SerialEndpoint
    if args.kind == "id":
        from sim.idcard_sam import VirtualSam, foreign_card, hmt_permit_card, resident_card
        card = {"resident": resident_card, "J": hmt_permit_card, "I": foreign_card,
                "none": lambda: None}[args.card]()
        device = VirtualSam(card)
    else:
        from sim.sscard_reader import VirtualSsCard, VirtualSsReader
        if args.card not in ("resident", "none"):
            raise UsageError(f"--card {args.card}: a social-security reader holds a card or none")
        device = VirtualSsReader(VirtualSsCard() if args.card != "none" else None)
    # SIGTERM ends like Ctrl-C, so the pty symlink and its directory are removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with SerialEndpoint(device, kind=args.line) as ep:
        print(ep.url, flush=True)
        print(f"reading it: gate-terminal card read --port {ep.url} --kind {args.kind}; Ctrl-C ends", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def run_fleet(args) -> int:
    from sim.fleet import MAX_TERMINALS, PER_WORKER, FleetError, run_fleet as fleet
    if not 1 <= args.terminals <= MAX_TERMINALS:
        raise UsageError(f"--terminals must be 1-{MAX_TERMINALS}")
    if not 0 < args.duration <= 86400 or not 0 <= args.rate <= 60:
        raise UsageError("--duration must be above 0 and at most 86400 s, --rate 0-60 per minute")
    if args.restart_broker_at is not None and not 0 < args.restart_broker_at < args.duration:
        raise UsageError("--restart-broker-at must fall inside --duration")
    if not 0 <= args.broker_down <= 3600:
        raise UsageError("--broker-down must be 0-3600 s")
    if args.workers is not None and not -(-args.terminals // PER_WORKER) <= args.workers <= 64:
        raise UsageError(f"--workers must be 1-64, and at least one per {PER_WORKER} terminals")
    if args.ramp is not None and not 0 <= args.ramp <= args.duration:
        raise UsageError("--ramp must be 0 to --duration")
    if not 0 < args.drain_timeout <= 3600 or not 0 < args.rollout_timeout <= 3600:
        raise UsageError("--drain-timeout and --rollout-timeout must be above 0 and at most 3600 s")
    if not 0 < args.ack_timeout <= 3600:
        raise UsageError("--ack-timeout must be above 0 and at most 3600 s")
    rollout = None
    if args.rollout is not None:
        dirs = args.rollout.split(",")
        if len(dirs) != 2 or not all(dirs):
            raise UsageError("--rollout takes GOOD_DIR,BAD_DIR")
        rollout = (Path(dirs[0]), Path(dirs[1]))
        for d in rollout:
            if not d.is_dir():
                raise UsageError(f"--rollout {d}: not a directory")
    if args.out is not None and args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"--out {args.out}: not a new or empty directory")
    try:
        rep = fleet(terminals=args.terminals, duration=args.duration, report=args.report, out=args.out,
                    rate=args.rate / 60.0, ramp=args.ramp, workers=args.workers,
                    restarts=[] if args.restart_broker_at is None else [(args.restart_broker_at, args.broker_down)],
                    drain_timeout=args.drain_timeout, rollout=rollout, rollout_timeout=args.rollout_timeout,
                    seed=args.seed, ack_timeout=args.ack_timeout)
    except (FleetError, OSError) as e:
        print(f"sim fleet: {e}")
        return 1
    ev, con = rep["events"], rep["connects"]
    print(f"{rep['terminals']} terminals: {ev['sent']} events sent, {ev['at_hub']} at the hub "
          f"({ev['missing']} missing, {ev['unexpected']} unexpected, {ev['duplicates_dropped']} duplicates "
          f"dropped), {con['total']} connects; hub {rep['hub']['events_per_s_mean']} events/s; "
          f"report {args.report}: {'OK' if rep['ok'] else 'FAILED'}")
    for st in rep.get("rollout", {}).get("stages", []):
        print(f"rollout {st['version']} stage {st.get('name', '-')}: {st['outcome']} in {st['seconds']} s "
              f"({st.get('good', 0)} good, {st.get('failed', 0)} failed of {st.get('terminals', '?')})")
    return 0 if rep["ok"] else 1


def run_scanner(args) -> int:
    import signal
    import sys
    import threading

    from sim.scan_engine import VirtualScanEngine
    for name in ("repeat", "hold", "decode_delay", "chunk_delay", "every"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 3600:
            raise UsageError(f"--{name.replace('_', '-')} must be 0-3600 seconds")
    if args.every is not None and args.keys is None:
        raise UsageError("--every needs --keys (the key set to mint codes with)")
    try:
        garbage = bytes.fromhex(args.garbage)
    except ValueError:
        raise UsageError("--garbage must be hex bytes, such as 00ff13") from None
    issuer = None
    if args.keys is not None:
        from sim.issuer import Issuer, Person
        try:
            issuer = Issuer.from_dir(args.keys)
        except (OSError, KeyFileError, ValueError) as e:
            raise UsageError(f"--keys {args.keys}: {e}") from None
    engine = VirtualScanEngine(kind=args.kind, prefix=args.prefix, suffix=args.suffix, repeat=args.repeat,
                               decode_delay=args.decode_delay, banner=args.banner)
    engine.faults.garbage, engine.faults.chunk_size, engine.faults.chunk_delay = garbage, args.chunk, args.chunk_delay
    stop = threading.Event()

    def scan(text: str) -> None:
        engine.show(text)
        stop.wait(args.hold)
        engine.clear()

    def fresh() -> str:
        return issuer.issue(Person(), iat=int(time.time()))

    # SIGTERM ends like Ctrl-C, so the pty symlink and its directory are removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with engine:
        print(engine.url, flush=True)
        try:
            if args.every is not None:
                while not stop.is_set():
                    scan(fresh())
                    stop.wait(args.every)
            for line in sys.stdin:
                text = line.strip("\r\n")
                if text or issuer is not None:
                    scan(text or fresh())
            stop.wait()  # stdin closed (started in the background): serve until stopped
        except KeyboardInterrupt:
            stop.set()
    return 0


def run_keys(args) -> int:
    from sim.devkeys import write_key_set
    from terminal.config import TID, TID_RULE
    if not TID.fullmatch(args.terminal_id):
        raise UsageError(f"--id must be a terminal id like 370102-H0001-03: {TID_RULE}")
    if args.venue not in VENUES:
        raise UsageError(f"--venue {args.venue!r}: not a venue type; one of {', '.join(VENUES)}")
    try:
        write_key_set(args.outdir, terminal_id=args.terminal_id, venue=args.venue, force=args.force)
    except (FileExistsError, OSError) as e:
        raise UsageError(str(e)) from None
    print(f"key set written to {args.outdir} (config: {args.outdir / 'config.toml'})")
    return 0


def run_staff_qr(args) -> int:
    from sim.issuer import staff_code
    from terminal.core.staff import MAX_TTL, SID
    from terminal.crypto.keyfiles import load_private_key
    if not SID.fullmatch(args.sid):
        raise UsageError("--sid must be 1-32 characters of A-Z a-z 0-9 . _ -")
    if not 1 <= args.ttl <= MAX_TTL:
        raise UsageError(f"--ttl must be 1-{MAX_TTL}")
    if args.iat is not None and not 0 <= args.iat < 1 << 32:
        raise UsageError("--iat must be unix seconds that fit 32 bits")
    try:
        hub_key = load_private_key(args.keys / "hub.pem")
    except (OSError, KeyFileError) as e:
        raise UsageError(f"--keys {args.keys}: {e}") from None
    print(staff_code(hub_key, args.sid, ttl=args.ttl, iat=args.iat))
    return 0


def run_issue(args) -> int:
    from sim.issuer import Issuer, Person
    if args.id_number is not None and not valid_check(args.id_number):
        raise UsageError("--id is not a valid 18-character resident ID number")
    if args.name is not None and not 1 <= len(args.name.encode()) <= 60:
        raise UsageError("--name must be 1-60 bytes of UTF-8")
    if not 0 <= args.ttl <= 0xFFFF:
        raise UsageError("--ttl must be 0-65535")
    try:
        issuer = Issuer.from_dir(args.keys, args.dkid)
    except (OSError, KeyFileError, ValueError) as e:
        raise UsageError(f"--keys {args.keys}: {e}") from None
    if issuer.dkid not in issuer.data_keys:
        raise UsageError(f"--dkid {args.dkid}: no such data key in {args.keys / 'data_keys.json'}")
    person = Person(status=args.status, star=args.star, close_contact=args.close_contact, nat=args.nat,
                    nat_hours_ago=args.nat_hours_ago, vax_doses=args.vax)
    if args.name:
        person.name = args.name
    if args.id_number:
        person.id_number = args.id_number
    print(issuer.issue(person, iat=args.iat if args.iat is not None else int(time.time()), ttl=args.ttl))
    return 0
