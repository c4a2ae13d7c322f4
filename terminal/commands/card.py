"""``gate-terminal card read``: wait for a card on a serial reader and show what it says.

Personal fields are masked (``张*``, ``370102********1234``, ``山东省济南市***``) unless
``--show``; exit 0 on a good read, 1 with one line on stderr otherwise.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from drivers import idnumber
from drivers.cards import CardError, CardRead, CardReader, ReaderError
from drivers.serial_link import LinkDown
from terminal.commands.usage import UsageError

CARD_TYPES = {"resident": "resident ID card", "hmt_residence_permit":
              "HK/Macau/Taiwan residence permit", "foreign_permanent_resident":
              "foreign permanent resident ID card"}


def register(sub) -> None:
    p = sub.add_parser("card", help="card readers: read a card")
    cardsub = p.add_subparsers(dest="card_command", required=True, metavar="CARDCOMMAND")
    r = cardsub.add_parser("read", help="wait for a card and print its fields (masked)")
    r.add_argument("--port", required=True,
                   help="reader: device path, pty or socket://host:port")
    r.add_argument("--kind", choices=("id", "ss"), default="id",
                   help="id: ID-card SAM (GA/T 467); ss: social-security card reader")
    r.add_argument("--baud", type=int, default=115200)
    r.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for a card (default 10)")
    r.add_argument("--json", action="store_true", help="one JSON object on stdout")
    r.add_argument("--show", action="store_true", help="print personal fields unmasked")
    r.set_defaults(func=run)


def open_reader(kind: str, port: str, baud: int) -> CardReader:
    if kind == "ss":
        from drivers.sscard.reader import SsCardReader  # the other reader, only when asked
        return SsCardReader(port, baudrate=baud)
    from drivers.idcard.reader import IdCardReader
    return IdCardReader(port, baudrate=baud)


def run(args) -> int:
    if args.baud <= 0:
        raise UsageError(f"--baud {args.baud}: must be a positive number")
    if not 0 <= args.timeout <= 3600:
        raise UsageError(f"--timeout {args.timeout}: must be 0-3600 seconds")
    reader = open_reader(args.kind, args.port, args.baud)
    deadline = time.monotonic() + args.timeout
    try:
        # One round at once, so a port that cannot be opened is reported without waiting.
        card = reader.poll(0) or reader.poll(max(0.0, deadline - time.monotonic()))
    except LinkDown as e:
        return _fail(f"port unavailable: {e}")
    except ReaderError as e:
        return _fail(f"reader on {args.port} does not work: {e}")
    except CardError as e:
        return _fail(f"card not read: {e}")
    finally:
        reader.close()
    if card is None:
        return _fail(f"no card within {args.timeout:g} s")
    fields = card_fields(card, show=args.show)
    if args.json:
        print(json.dumps(fields, ensure_ascii=False))
    else:
        width = max(map(len, fields))
        for key, value in fields.items():
            print(f"{key.replace('_', ' '):<{width}}  {value}")
    return 0


def card_fields(card: CardRead, *, show: bool) -> dict[str, str]:
    """The card's fields in reading order, personal ones masked unless ``show``."""
    def keep(value: str) -> str:
        return value

    def hide_date(value: str) -> str:
        return "****-**-**"

    name, number, address, born = ((keep, keep, keep, keep) if show else
                                   (idnumber.mask_name, idnumber.mask_id,
                                    idnumber.mask_address, hide_date))
    extra = card.extra
    card_type = extra.get("card_type", "")
    if card.kind == "ss_card":
        kind, number_key = "social-security card", "ss_number"
    else:
        kind = CARD_TYPES.get(card_type, "ID card")
        number_key = "card_number" if card_type == "foreign_permanent_resident" else "id_number"
    rows: list[tuple[str, str | None, Callable[[str], str]]] = [
        ("card", kind, keep),
        ("card_number", extra.get("card_number"), number),
        (number_key, card.id_number, number),
        ("name", card.name, name),
        ("english_name", extra.get("english_name"), name),
        ("sex", card.sex, keep),
        ("nation", extra.get("nation"), keep),
        ("nationality", extra.get("nationality"), keep),
        ("birth_date", card.birth_date, born),
        ("address", extra.get("address"), address),
        ("authority", extra.get("authority"), keep),
        ("pass_number", extra.get("pass_number"), number),
        ("issue_count", extra.get("issue_count"), keep),
        ("valid_from", card.valid_from, keep),
        ("valid_to", card.valid_to, keep),
    ]
    return {key: mask(value) for key, value, mask in rows if value}


def _fail(message: str) -> int:
    print(f"gate-terminal: {message}", file=sys.stderr)
    return 1
