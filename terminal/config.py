"""The terminal's configuration: one TOML file, typed and validated as a whole at start.

Every key is declared once, a field of its section's frozen dataclass with its converter,
default and doc (and documented in ``config.example.toml``); an unknown key, a wrong type or
a missing file is a :class:`ConfigError` whose one-line message names the file and the key.
Relative paths are relative to the config file.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType

from terminal.core import policy as pol
from terminal.core.brokerurl import parse_broker_url
from terminal.crypto.sm2 import PublicKey, SM2Error
from terminal.ops.sdnotify import CREDENTIALS, credential_path
from terminal.ops.smallfile import read_small


class ConfigError(ValueError):
    pass


MAX_BYTES = 1 << 16  # config.example.toml, every key explained, is under 11 KiB
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
    return tuple(keys)


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
SCANNER_BAUDS = ID_CARD_BAUDS  # §6: 9600 or 115200 by the engine's setting; the standard rates between
MAX_PREFIX = 16


def _prefix(v):
    if not isinstance(v, str) or not 1 <= len(v) <= MAX_PREFIX or "\r" in v or "\n" in v:
        raise ValueError(f"must be 1-{MAX_PREFIX} characters without CR or LF (TOML escapes such as "
                         f"\"\\u0002\" name control characters)")
    return v


MAX_BROKERS = 8  # the nodes of one broker cluster


def _broker_url(v):
    """One URL, or a list of the cluster's nodes (kept as a tuple) sharing one scheme."""
    if isinstance(v, list):
        if not 1 <= len(v) <= MAX_BROKERS:
            raise ValueError(f"must be a URL or a list of 1-{MAX_BROKERS} URLs (the nodes of one cluster)")
        urls = []
        for i, item in enumerate(v):
            try:
                parse_broker_url(_str(item))
            except ValueError as e:
                raise ValueError(f"[{i}] {e}") from None
            if item in urls:
                raise ValueError(f"[{i}] {item} is listed twice")
            urls.append(item)
        if len({parse_broker_url(u).tls for u in urls}) > 1:
            raise ValueError("must all be mqtts:// or all mqtt:// (one cluster, one TLS setup)")
        return tuple(urls)
    parse_broker_url(_str(v))  # ValueError: the message says why
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


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def _name(v):
    if not isinstance(v, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", v):
        raise ValueError("must be a backend name: lower-case letters, digits and '_'")
    return v


def _clock_time(v):
    """"HH:MM" (or a TOML local time): a time of day, to the minute."""
    if isinstance(v, dt.time) and v.tzinfo is None:
        return v.replace(second=0, microsecond=0)
    m = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", v) if isinstance(v, str) else None
    if not m:
        raise ValueError('must be a time of day "HH:MM", 00:00 to 23:59')
    return dt.time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class Setting:
    """One key: its converter, default (REQUIRED, None for absent, or a value the converter
    takes), a one-line doc, and whether it is a path resolved against the config file."""
    convert: Callable[[object], object]
    default: object
    doc: str
    path: bool = False


def setting(convert, default, doc: str, *, path: bool = False):
    return field(metadata={"setting": Setting(convert, default, doc, path)})


def settings(section: type) -> dict[str, Setting]:
    """A section's keys, in declaration order."""
    return {f.name: f.metadata["setting"] for f in fields(section)}


@dataclass(frozen=True)
class TerminalSection:
    id: str = setting(_tid, REQUIRED, "terminal id: the MQTT client id, a topic level, the TLS CN")
    venue: str = setting(_venue, REQUIRED, "venue type; picks the policy preset")
    state_dir: Path = setting(_path, "state", "the terminal's database and state files", path=True)
    device_key: Path | None = setting(_path, None, "SM2 device key (PEM); required with hub.broker", path=True)
    venue_name: str | None = setting(_str, None, "the venue's name on the idle screen")


@dataclass(frozen=True)
class TrustSection:
    root_keys: tuple[PublicKey, ...] = setting(_pubkeys, REQUIRED, "pinned provincial root keys")
    trust_list: Path = setting(_path, REQUIRED, "the signed trust-list envelope", path=True)
    data_keys: Path = setting(_path, REQUIRED, "local SM4 data keys (mode 0600)", path=True)
    stale_grace_hours: int = setting(_int_range(0, 8760), 24,
                                       "hours past the trust list's next_update before alarm trust_stale")


@dataclass(frozen=True)
class HubSection:
    public_key: PublicKey = setting(_pubkey, REQUIRED, "the hub's SM2 key; event subjects are encrypted to it")
    broker: str | tuple[str, ...] | None = setting(_broker_url, None, "mqtts://host:port, or a list of a "
                                                   "cluster's nodes; absent: no hub connection")
    ca: Path | None = setting(_path, None, "CA that signed the broker's certificate", path=True)
    cert: Path | None = setting(_path, None, "this terminal's TLS client certificate", path=True)
    key: Path | None = setting(_path, None, "its key (mode 0600)", path=True)
    prefix: str = setting(_topic_prefix, "hc/v1", "MQTT topic prefix")
    query_timeout: float = setting(_seconds(0.1, 30), 1.5, "seconds to wait for the hub's answer about a card")
    alarm_hub_minutes: int = setting(_int_range(1, 1440), 10, "no connection this long: alarm hub_unreachable")
    alarm_outbox_minutes: int = setting(_int_range(1, 10080), 30,
                                        "oldest unacknowledged event this old: alarm outbox_backlog")

    @property
    def brokers(self) -> tuple[str, ...]:
        """Every configured broker node, in the order they are tried; () for none."""
        b = self.broker
        return () if b is None else (b,) if isinstance(b, str) else tuple(b)

    def tls_files(self) -> dict[str, Path | None]:
        """The TLS files by key, for messages that name the key."""
        return {"ca": self.ca, "cert": self.cert, "key": self.key}


@dataclass(frozen=True)
class MetricsSection:
    listen: str | None = setting(_listen, None, "Prometheus endpoint on this machine; absent: none")


@dataclass(frozen=True)
class RetentionSection:
    days: int = setting(_int_range(1, 3650), 21, "synced events older than this are purged")


@dataclass(frozen=True)
class TimeSection:
    tolerance: float = setting(_seconds(0, 3600), 5.0, "seconds the clock may step back before it is untrusted")


@dataclass(frozen=True)
class CameraSection:
    source: str | None = setting(_str, None, "V4L2 device, image files, a video or sim:…; absent: no camera")
    width: int = setting(_int_range(160, 4096), 640, "requested capture width")
    height: int = setting(_int_range(120, 4096), 480, "requested capture height")
    fps: int = setting(_int_range(1, 120), 30, "requested frame rate")
    gap: float = setting(_seconds(0.2, 10), 1.5, "a code unseen this long has left the camera")


@dataclass(frozen=True)
class CardReaderSection:
    port: str | None = setting(_str, None, "pyserial URL; absent: no reader")


@dataclass(frozen=True)
class IdCardSection(CardReaderSection):
    baud: int = setting(_baud(*ID_CARD_BAUDS), 115200, "the SAM module's rate")


@dataclass(frozen=True)
class SsCardSection(CardReaderSection):
    baud: int = setting(_baud(*SS_CARD_BAUDS), 115200, "the reader's rate")


@dataclass(frozen=True)
class ScannerSection:
    kind: str = setting(_choice("serial", "hid"), "serial",
                        "serial (UART or USB-CDC virtual COM port) or hid (USB keyboard mode)")
    port: str | None = setting(_str, None, "kind serial: pyserial URL; absent: no scan engine")
    device: str | None = setting(_str, None, "kind hid: its input device; absent: no scan engine")
    baud: int = setting(_baud(*SCANNER_BAUDS), 9600, "kind serial: the engine's rate")
    prefix: str | None = setting(_prefix, None, "what the engine sends before each code; absent: nothing")
    suffix: str = setting(_choice("cr", "lf", "crlf"), "cr", "kind serial: what ends each code")
    gap: float = setting(_seconds(0.2, 10), 1.5, "the same code again within this is the engine repeating it")

    @property
    def where(self) -> str | None:
        """The port or input device the engine is on; None: there is no scan engine."""
        return self.port if self.kind == "serial" else self.device


@dataclass(frozen=True)
class RelaySection:
    kind: str = setting(_choice("lcus", "none"), "none", "the gate relay, or none")
    port: str | None = setting(_str, None, "pyserial URL; required for kind lcus")
    pulse_ms: int = setting(_int_range(100, 10000), 800, "how long the contact closes")


@dataclass(frozen=True)
class ScreenSection:
    kind: str = setting(_choice("framebuffer", "png", "none"), "none", "the kiosk panel's backend")
    path: str | None = setting(_str, None, "framebuffer device, or the PNG directory")
    width: int = setting(_int_range(240, 4096), 800, "PNG panel width; a framebuffer says its own size")
    height: int = setting(_int_range(240, 4096), 480, "PNG panel height")
    result_seconds: float = setting(_seconds(0.5, 60), 3.0, "how long a decision stays on the panel")
    large_print: bool = setting(_bool, False, "larger name, reason and instruction; no time or date lines")


_MODE = _choice("speech", "tone", "silent")


@dataclass(frozen=True)
class AudioSection:
    kind: str = setting(_name, "none", "the speaker's backend: alsa, none, or one a plug-in registers")
    device: str = setting(_str, "default", "the ALSA PCM (default, plughw:1,0, …); the sink's target")
    volume: int = setting(_int_range(0, 100), 80, "loudness, 0-100")
    on_allow: str = setting(_MODE, "tone", "what an allow plays: speech, tone or silent")
    on_deny: str = setting(_MODE, "speech", "what a deny plays")
    on_review: str = setting(_MODE, "speech", "what a review (and a staff override) plays")
    quiet_from: dt.time | None = setting(_clock_time, None, "quiet hours start, HH:MM local time")
    quiet_until: dt.time | None = setting(_clock_time, None, "quiet hours end (exclusive)")
    quiet_volume: int = setting(_int_range(0, 100), 30, "loudness during quiet hours")

    def modes(self) -> dict[str, str]:
        return {pol.ALLOW: self.on_allow, pol.DENY: self.on_deny, pol.REVIEW: self.on_review}


def _https_url(v):
    if not re.fullmatch(r"https://[A-Za-z0-9.\-\[\]:]{1,255}(/[\x21-\x7e]{0,512})?", _str(v)):
        raise ValueError("must be an https:// URL (the hub's release repository)")
    return v.rstrip("/")


@dataclass(frozen=True)
class UpdateSection:
    prefix: Path | None = setting(_path, None, "where releases/ and the current link live; absent: no updates",
                                  path=True)
    repository: str | None = setting(_https_url, None, "the hub's TUF release repository, https://…")
    root: Path | None = setting(_path, None, "the repository's trusted TUF root.json (provisioned)", path=True)
    ca: Path | None = setting(_path, None, "CA of the repository's certificate; default hub.ca", path=True)
    health_seconds: float = setting(_seconds(10, 3600), 120.0,
                                    "a new release must be healthy this soon or it is rolled back")


# [section] → its dataclass; [policy] is validated by terminal.core.policy
SECTIONS: dict[str, type] = {
    "terminal": TerminalSection, "trust": TrustSection, "hub": HubSection, "metrics": MetricsSection,
    "retention": RetentionSection, "time": TimeSection, "camera": CameraSection, "id_card": IdCardSection,
    "ss_card": SsCardSection, "scanner": ScannerSection, "relay": RelaySection, "screen": ScreenSection,
    "audio": AudioSection, "update": UpdateSection,
}
DEVICE_SECTIONS = ("camera", "id_card", "ss_card", "scanner", "relay", "screen", "audio")


@dataclass(frozen=True)
class Config:
    """A loaded configuration; never changed in place (a reload loads a new one)."""
    path: Path
    terminal: TerminalSection
    trust: TrustSection
    hub: HubSection
    metrics: MetricsSection
    retention: RetentionSection
    time: TimeSection
    camera: CameraSection
    id_card: IdCardSection
    ss_card: SsCardSection
    scanner: ScannerSection
    relay: RelaySection
    screen: ScreenSection
    audio: AudioSection
    update: UpdateSection
    policy_overrides: Mapping[str, object]    # [policy], validated; read-only

    # Short names for the keys read most: cfg.terminal_id is cfg.terminal.id.
    terminal_id = property(lambda self: self.terminal.id)
    venue = property(lambda self: self.terminal.venue)
    venue_name = property(lambda self: self.terminal.venue_name)
    state_dir = property(lambda self: self.terminal.state_dir)
    device_key = property(lambda self: self.terminal.device_key)
    root_keys = property(lambda self: self.trust.root_keys)
    trust_list = property(lambda self: self.trust.trust_list)
    data_keys = property(lambda self: self.trust.data_keys)
    hub_key = property(lambda self: self.hub.public_key)
    clock_tolerance = property(lambda self: self.time.tolerance)

    def keeping_restart_settings(self, running: Config) -> Config:
        """This (reloaded) config with the running one's device and hub settings, which take
        effect only at a restart — but the hub key, the verifier's; itself if they are the same."""
        kept = {"hub": replace(running.hub, public_key=self.hub.public_key),
                **{section: getattr(running, section) for section in DEVICE_SECTIONS}}
        if all(getattr(self, section) == value for section, value in kept.items()):
            return self
        return replace(self, **kept)

    def with_hub(self, **changes) -> Config:
        """A copy pointed at another broker (the demo's, a test's): [hub] with ``changes``."""
        return replace(self, hub=replace(self.hub, **changes))

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
        if section not in SECTIONS and section != "policy":
            raise ConfigError(f"{path}: unknown section [{section}] (known: "
                              f"{', '.join(list(SECTIONS) + ['policy'])})")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{path}: {section} must be a [section]")
    values: dict[str, dict[str, object]] = {}
    for section, cls in SECTIONS.items():
        given, keys, values[section] = raw.get(section, {}), settings(cls), {}
        for key in given:
            if key not in keys:
                raise ConfigError(f"{path}: unknown key {section}.{key} (known: {', '.join(keys)})")
        for key, s in keys.items():
            if key not in given:
                if s.default is REQUIRED:
                    raise ConfigError(f"{path}: missing required key {section}.{key}")
                value = s.convert(s.default) if s.default is not None else None
            else:
                try:
                    value = s.convert(given[key])
                except ValueError as e:
                    raise ConfigError(f"{path}: {section}.{key} {e}") from None
            if s.path and value is not None:
                try:
                    value = (base / value).resolve()
                except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a symlink loop
                    raise ConfigError(f"{path}: {section}.{key} {base / value}: symbolic link loop") from None
            values[section][key] = value
    hub, screen = values["hub"], values["screen"]
    brokers = () if hub["broker"] is None else (hub["broker"],) if isinstance(hub["broker"], str) else hub["broker"]
    if any(u.startswith("mqtts:") for u in brokers):
        for key in ("ca", "cert", "key"):
            if hub[key] is None:
                raise ConfigError(f"{path}: hub.{key} is required for a mqtts:// broker")
    if hub["broker"] and values["terminal"]["device_key"] is None:
        raise ConfigError(f"{path}: terminal.device_key is required to sign event batches for the hub")
    scanner = values["scanner"]
    for key, kind in (("port", "serial"), ("device", "hid")):
        if scanner[key] and scanner["kind"] != kind:
            raise ConfigError(f"{path}: scanner.{key} is for kind = \"{kind}\", this engine is "
                              f"kind = \"{scanner['kind']}\"")
    update = values["update"]
    if update["prefix"] is not None:
        if not hub["broker"]:
            raise ConfigError(f"{path}: update.prefix needs hub.broker (rollouts and results ride the hub link)")
        for key in ("repository", "root"):
            if update[key] is None:
                raise ConfigError(f"{path}: update.{key} is required with update.prefix")
        if update["ca"] is None:
            update["ca"] = hub["ca"]
    if values["relay"]["kind"] == "lcus" and not values["relay"]["port"]:
        raise ConfigError(f"{path}: relay.port is required when relay.kind = \"lcus\"")
    audio = values["audio"]
    if (audio["quiet_from"] is None) != (audio["quiet_until"] is None):
        raise ConfigError(f"{path}: audio.quiet_from and audio.quiet_until go together")
    if audio["quiet_from"] is not None and audio["quiet_from"] == audio["quiet_until"]:
        raise ConfigError(f"{path}: audio.quiet_until must differ from audio.quiet_from")
    if screen["path"]:
        # Relative to the config file, like every path; not resolved: a framebuffer is named
        # by its device link (/dev/gate/fb), which may point elsewhere after a replug.
        screen["path"] = os.path.abspath(base / screen["path"])
    elif screen["kind"] == "framebuffer":
        screen["path"] = "/dev/fb0"
    elif screen["kind"] == "png":
        screen["path"] = str(values["terminal"]["state_dir"] / "screen")
    try:
        overrides = pol.validate_overrides(raw.get("policy", {}))
    except ValueError as e:
        raise ConfigError(f"{path}: policy.{e}") from None
    # Secrets systemd passes with LoadCredential= take the place of the configured files.
    for dotted, name in CREDENTIALS.items():
        section, key = dotted.split(".")
        values[section][key] = credential_path(name, values[section][key])
    return Config(path=path, policy_overrides=MappingProxyType(overrides),
                  **{section: cls(**values[section]) for section, cls in SECTIONS.items()})
