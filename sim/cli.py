"""``gate-terminal sim …``: the platform and hardware simulator (development key sets, tokens)."""
from __future__ import annotations

import time
from pathlib import Path

from drivers.idnumber import valid_check
from terminal.commands.usage import UsageError
from terminal.crypto.keyfiles import KeyFileError
from terminal.core.policy import VENUES

LEVELS = ("clean", "mild", "moderate", "hard")


def register(sub) -> None:
    p = sub.add_parser("sim", help="simulator: key sets, tokens")
    simsub = p.add_subparsers(dest="sim_command", required=True, metavar="SIMCOMMAND")

    k = simsub.add_parser("keys", help="make a development key set, signed trust list and config.toml")
    k.add_argument("outdir", type=Path)
    k.add_argument("--venue", default="mall", help="venue type written into config.toml")
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

    from sim.hub_cli import add_cmd_parser, add_parser as add_hub
    add_hub(simsub)
    add_cmd_parser(simsub)

    d = simsub.add_parser("demo", help="the whole terminal on simulated hardware, with a crowd",
                          description="Starts the real daemon against simulated hardware (virtual camera, "
                                      "ID-card and social-security readers and gate relay on pseudo-"
                                      "terminals, PNG panels), sends a crowd through and checks every "
                                      "decision against ground truth. Needs no broker and no hardware.")
    d.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds of arrivals (default 60)")
    d.add_argument("--venue", choices=VENUES, default="hospital")
    d.add_argument("--rate", type=float, default=20.0, metavar="PER_MIN", help="arrivals per minute (default 20)")
    d.add_argument("--camera", choices=tuple(LEVELS), default="mild", help="how hard the camera has it")
    d.add_argument("--seed", type=int, help="make the crowd repeatable")
    d.add_argument("--out", type=Path, default=Path("demo-out"),
                   help="keys, state and screens: a new or empty directory, or an earlier demo's "
                        "(only the demo's own files there are replaced)")
    d.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report")
    hub = d.add_mutually_exclusive_group()
    hub.add_argument("--hub", action="store_true",
                     help="also run a Mosquitto (TLS) and the hub simulator: events sync, cards are answered")
    hub.add_argument("--config", type=Path, metavar="FILE",
                     help="a terminal config naming an outside broker and hub (beside it: a 'sim keys' set); "
                          "the demo starts no hub of its own")
    d.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from sim.demo import NotDemoDir, run_demo as demo
    if args.duration <= 0 or not 0 < args.rate <= 40:
        raise UsageError("--duration must be positive and --rate from 0 to 40 per minute (one lane)")
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
                   seed=args.seed, report=args.report, hub=args.hub, config=args.config)
    except NotDemoDir as e:
        raise UsageError(str(e)) from None
    return 0 if res["agreement"] == 1.0 else 1


def run_keys(args) -> int:
    from sim.devkeys import write_key_set
    from terminal.config import TID, TID_RULE
    if not TID.fullmatch(args.terminal_id):
        raise UsageError(f"--id must be a terminal id like 370102-H0001-03: {TID_RULE}")
    try:
        write_key_set(args.outdir, terminal_id=args.terminal_id, venue=args.venue, force=args.force)
    except (FileExistsError, OSError) as e:
        raise UsageError(str(e)) from None
    print(f"key set written to {args.outdir} (config: {args.outdir / 'config.toml'})")
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
