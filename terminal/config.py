"""The terminal's configuration: one TOML file, typed and validated as a whole at start.

Every key is declared in :data:`SCHEMA` (and documented in ``config.example.toml``); an
unknown key, a wrong type or a missing file is a :class:`ConfigError` whose one-line
message names the file and the key. Relative paths are relative to the config file.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from terminal.core import policy as pol
from terminal.crypto.sm2 import PublicKey, SM2Error
from terminal.ops.sdnotify import CREDENTIALS, credential_path
from terminal.ops.smallfile import read_small


class ConfigError(ValueError):
    pass


MAX_BYTES = 1 << 16  # config.example.toml, every key explained, is under 6 KiB
# A terminal id (tid, docs/protocol/hub.md): 6-digit district code, site code, 2-digit lane, as
# 370102-H0001-03. It is the TLS CN, the MQTT client id and a topic level, so nothing else may
# pass: not "hub" (the broker's all-powerful identity), not a '/', '+' or '#'.
TID = re.compile(r"[0-9]{6}-[A-Z0-9]{1,16}-[0-9]{2}")
TID_RULE = "a 6-digit district code, a site code of 1-16 capital letters and digits, a 2-digit lane"
REQUIRED = object()


def _str(v):
    if not isinstance(v, str) or not v:
        raise ValueError("must be a non-empty string")
    return v


def _tid(v):
    if not isinstance(v, str) or not TID.fullmatch(v):
        raise ValueError(f"must be a terminal id like 370102-H0001-03: {TID_RULE}")
    return v


def _venue(v):
    if v not in pol.VENUES:
        raise ValueError(f"unknown venue type {v!r} (one of {', '.join(pol.VENUES)})")
    return v


def _path(v):
    return Path(_str(v))


def _pubkey(v):
    try:
        return PublicKey.from_hex(_str(v))
    except SM2Error as e:
        raise ValueError(str(e)) from None


def _pubkeys(v):
    if not isinstance(v, list) or not v:
        raise ValueError("must be a non-empty list of 130-hex SM2 public keys")
    keys = []
    for i, item in enumerate(v):
        try:
            keys.append(_pubkey(item))
        except ValueError as e:
            raise ValueError(f"[{i}] {e}") from None
    return keys


def _int_range(lo, hi):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"must be an integer from {lo} to {hi}")
        return v
    return check


def _choice(*options):
    def check(v):
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}, not {v!r}")
        return v
    return check


def _baud(*rates):
    def check(v):
        if isinstance(v, bool) or v not in rates:
            raise ValueError(f"must be one of {', '.join(map(str, rates))} (the rates the reader "
                             f"can be set to), not {v!r}")
        return v
    return check


# docs/protocol/devices.md: a GA/T 467 SAM module, and the social-security-card reader
ID_CARD_BAUDS = (115200, 57600, 38400, 19200, 9600)
SS_CARD_BAUDS = (9600, 115200)


def _broker_url(v):
    m = re.fullmatch(r"(mqtts?)://([A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})", _str(v))
    if not m or not 0 < int(m.group(3)) < 65536:
        raise ValueError("must be mqtts://host:port (or mqtt://127.0.0.1:port for a broker on this machine)")
    if m.group(1) == "mqtt" and m.group(2) not in ("127.0.0.1", "localhost", "[::1]"):
        raise ValueError("mqtt:// (no TLS) is allowed only for a broker on this machine; use mqtts://")
    return v


def _topic_prefix(v):
    if not re.fullmatch(r"[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*", _str(v)):
        raise ValueError("must be topic levels of letters, digits, '_' or '-' separated by '/'")
    return v


def _listen(v):
    m = re.fullmatch(r"(127\.0\.0\.1|localhost|\[::1\]):([0-9]{1,5})", _str(v))
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError("must be 127.0.0.1:PORT (metrics are served on this machine only)")
    return v


def _seconds(lo, hi):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise ValueError(f"must be a number of seconds from {lo} to {hi}")
        return float(v)
    return check


# section → key → (converter, default)
SCHEMA: dict[str, dict[str, tuple]] = {
    "terminal": {
        "id": (_tid, REQUIRED),
        "venue": (_venue, REQUIRED),
        "state_dir": (_path, "state"),
        "device_key": (_path, None),
        "venue_name": (_str, None),
    },
    "trust": {
        "root_keys": (_pubkeys, REQUIRED),
        "trust_list": (_path, REQUIRED),
        "data_keys": (_path, REQUIRED),
    },
    "hub": {
        "public_key": (_pubkey, REQUIRED),
        "broker": (_broker_url, None),       # absent: no hub connection (cards: offline_unknown)
        "ca": (_path, None),
        "cert": (_path, None),
        "key": (_path, None),
        "prefix": (_topic_prefix, "hc/v1"),
        "query_timeout": (_seconds(0.1, 30), 1.5),
        "alarm_hub_minutes": (_int_range(1, 1440), 10),  # no connection this long: hub_unreachable
    },
    "metrics": {
        "listen": (_listen, None),           # e.g. "127.0.0.1:9105"; absent: no endpoint
    },
    "retention": {
        "days": (_int_range(1, 3650), 21),   # synced events older than this are purged
    },
    "time": {
        "tolerance": (_seconds(0, 3600), 5.0),
    },
    "camera": {
        "source": (_str, None),            # V4L2 device, image files or a video; absent: no camera
        "width": (_int_range(160, 4096), 640),
        "height": (_int_range(120, 4096), 480),
        "fps": (_int_range(1, 120), 30),
        "gap": (_seconds(0.2, 10), 1.5),     # a code unseen this long has left the camera
    },
    "id_card": {
        "port": (_str, None),              # pyserial URL; absent: no ID-card reader
        "baud": (_baud(*ID_CARD_BAUDS), 115200),
    },
    "ss_card": {
        "port": (_str, None),
        "baud": (_baud(*SS_CARD_BAUDS), 115200),
    },
    "relay": {
        "kind": (_choice("lcus", "none"), "none"),
        "port": (_str, None),
        "pulse_ms": (_int_range(100, 10000), 800),
    },
    "screen": {
        "kind": (_choice("framebuffer", "png", "none"), "none"),
        "path": (_str, None),              # framebuffer device, or the PNG directory
        "width": (_int_range(240, 4096), 800),   # PNG panels; a framebuffer says its own size
        "height": (_int_range(240, 4096), 480),
        "result_seconds": (_seconds(0.5, 60), 3.0),
    },
}
DEVICE_SECTIONS = ("camera", "id_card", "ss_card", "relay", "screen")
PATH_KEYS = {("terminal", "state_dir"), ("terminal", "device_key"), ("trust", "trust_list"),
             ("trust", "data_keys"), ("hub", "ca"), ("hub", "cert"), ("hub", "key")}


@dataclass
class Config:
    path: Path
    terminal_id: str
    venue: str
    state_dir: Path
    device_key: Path | None
    root_keys: list[PublicKey]
    trust_list: Path
    data_keys: Path
    hub_key: PublicKey
    clock_tolerance: float
    policy_overrides: dict = field(default_factory=dict)
    venue_name: str | None = None
    devices: dict[str, dict] = field(default_factory=dict)  # camera, id_card, ss_card, relay, screen
    hub: dict = field(default_factory=dict)                 # [hub] but public_key
    metrics_listen: str | None = None
    retention_days: int = 21

    def policy(self, venue: str | None = None) -> pol.Policy:
        """The venue's preset with this terminal's overrides on top."""
        return pol.PRESETS[venue or self.venue].with_overrides(self.policy_overrides)


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = tomllib.loads(read_small(path, MAX_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:  # the parser recurses per level of [[[ or {{{ nesting
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    return from_dict(raw, path)


def from_dict(raw: dict, path: Path) -> Config:
    base = path.parent
    for section in raw:
        if section not in SCHEMA and section != "policy":
            raise ConfigError(f"{path}: unknown section [{section}] (known: "
                              f"{', '.join(list(SCHEMA) + ['policy'])})")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{path}: {section} must be a [section]")
    values: dict[tuple[str, str], object] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        for key in given:
            if key not in keys:
                raise ConfigError(f"{path}: unknown key {section}.{key} (known: {', '.join(keys)})")
        for key, (convert, default) in keys.items():
            if key not in given:
                if default is REQUIRED:
                    raise ConfigError(f"{path}: missing required key {section}.{key}")
                value = convert(default) if default is not None else None
            else:
                try:
                    value = convert(given[key])
                except ValueError as e:
                    raise ConfigError(f"{path}: {section}.{key} {e}") from None
            if (section, key) in PATH_KEYS and value is not None:
                try:
                    value = (base / value).resolve()
                except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a symlink loop
                    raise ConfigError(f"{path}: {section}.{key} {base / value}: symbolic link loop") from None
            values[(section, key)] = value
    broker = values["hub", "broker"]
    if broker and broker.startswith("mqtts:"):
        for key in ("ca", "cert", "key"):
            if values["hub", key] is None:
                raise ConfigError(f"{path}: hub.{key} is required for a mqtts:// broker")
    if broker and values["terminal", "device_key"] is None:
        raise ConfigError(f"{path}: terminal.device_key is required to sign event batches for the hub")
    if values["relay", "kind"] == "lcus" and not values["relay", "port"]:
        raise ConfigError(f"{path}: relay.port is required when relay.kind = \"lcus\"")
    if values["screen", "path"]:
        # Relative to the config file, like every path; not resolved: a framebuffer is named
        # by its device link (/dev/gate/fb), which may point elsewhere after a replug.
        values["screen", "path"] = os.path.abspath(base / values["screen", "path"])
    elif values["screen", "kind"] == "framebuffer":
        values["screen", "path"] = "/dev/fb0"
    elif values["screen", "kind"] == "png":
        values["screen", "path"] = str(values["terminal", "state_dir"] / "screen")
    try:
        overrides = pol.validate_overrides(raw.get("policy", {}))
    except ValueError as e:
        raise ConfigError(f"{path}: policy.{e}") from None
    # Secrets systemd passes with LoadCredential= take the place of the configured files.
    for dotted, name in CREDENTIALS.items():
        section, key = dotted.split(".")
        values[section, key] = credential_path(name, values[section, key])
    return Config(
        path=path, terminal_id=values["terminal", "id"], venue=values["terminal", "venue"],
        state_dir=values["terminal", "state_dir"], device_key=values["terminal", "device_key"],
        root_keys=values["trust", "root_keys"], trust_list=values["trust", "trust_list"],
        data_keys=values["trust", "data_keys"], hub_key=values["hub", "public_key"],
        clock_tolerance=values["time", "tolerance"], policy_overrides=overrides,
        venue_name=values["terminal", "venue_name"],
        devices={section: {k: values[section, k] for k in SCHEMA[section]} for section in DEVICE_SECTIONS},
        hub={k: values["hub", k] for k in SCHEMA["hub"] if k != "public_key"},
        metrics_listen=values["metrics", "listen"], retention_days=values["retention", "days"],
    )
