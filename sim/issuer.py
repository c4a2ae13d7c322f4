"""Mints SDHC1 tokens as the health-code app shows them, from a key set of ``sim keys``."""
from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from terminal.core import token as tok
from terminal.core.staff import staff_qr
from drivers.idnumber import check_character
from terminal.crypto.keyfiles import load_data_keys, load_private_key
from terminal.crypto.sm2 import PrivateKey

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红建国志强春梅海燕文建华"
REGIONS = ("370102", "370103", "370181", "110105", "310115", "440305", "510107")
NAT = {"none": tok.NAT_NONE, "negative": tok.NAT_NEGATIVE, "positive": tok.NAT_POSITIVE,
       "pending": tok.NAT_PENDING}
STATUS = {"green": 0, "yellow": 1, "red": 2}


def random_id_number(rng: random.Random = random) -> str:
    birth = f"{rng.randint(1940, 2015)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    first17 = rng.choice(REGIONS) + birth + f"{rng.randint(0, 999):03d}"
    return first17 + check_character(first17)


def random_name(rng: random.Random = random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))


@dataclass
class Person:
    status: str = "green"
    star: bool = False
    close_contact: bool = False
    monitored: bool = False
    nat: str = "negative"
    nat_hours_ago: float = 12.0
    vax_doses: int = 3
    name: str = field(default_factory=random_name)
    id_number: str = field(default_factory=random_id_number)


class Issuer:
    def __init__(self, key: PrivateKey, data_keys: dict[int, bytes], dkid: int | None = None):
        self.key = key
        self.data_keys = data_keys
        self.dkid = dkid if dkid is not None else min(data_keys)

    @classmethod
    def from_dir(cls, keys_dir: Path, dkid: int | None = None) -> "Issuer":
        return cls(load_private_key(keys_dir / "issuer.pem"), load_data_keys(keys_dir / "data_keys.json"), dkid)

    def issue(self, person: Person, *, iat: int | None = None, ttl: int = 60) -> str:
        iat = int(time.time()) if iat is None else iat
        flags = (tok.FLAG_STAR * person.star) | (tok.FLAG_CLOSE_CONTACT * person.close_contact) \
            | (tok.FLAG_MONITORED * person.monitored)
        nat_at = 0 if person.nat == "none" else int(iat - person.nat_hours_ago * 3600)
        body = tok.Body(STATUS[person.status], flags, nat_at, NAT[person.nat], person.vax_doses,
                        person.id_number, person.name)
        return tok.encode(self.key, dkid=self.dkid, data_key=self.data_keys[self.dkid], iat=iat, ttl=ttl,
                          nonce=secrets.token_bytes(8), body=body)


def staff_code(hub_key: PrivateKey, sid: str, *, ttl: int = 30, iat: int | None = None) -> str:
    """A staff QR code (docs/protocol/staff.md) for staff id ``sid``, signed by the hub key, as
    the hub's staff app shows it: fresh for ``ttl`` seconds, good for one review."""
    return staff_qr(hub_key, sid, iat=int(time.time()) if iat is None else iat, ttl=ttl,
                    nonce=secrets.token_bytes(8))
