"""Configuration: typed, every key documented, errors that name the file and the key."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib

import pytest

from terminal import config as cfgmod
from terminal.core.policy import FIELD_NAMES

from conftest import ROOT


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def base(keyset):
    return (keyset / "config.toml").read_text()


def test_sim_config_loads_with_relative_paths(keyset):
    cfg = cfgmod.load(keyset / "config.toml")
    assert cfg.state_dir == (keyset / "state").resolve()
    assert cfg.trust_list == (keyset / "trust.envelope.json").resolve()
    assert cfg.device_key == (keyset / "device.pem").resolve()
    assert cfg.clock_tolerance == 5.0 and cfg.policy().nat_hours == 72


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + "\n[cameras]\nx = 1\n", "unknown section [cameras]"),
    (lambda t: t + "\n[camera]\nx = 1\n", "unknown key camera.x"),
    (lambda t: t + "\n[relay]\nkind = 'lcus'\n", "relay.port is required"),
    (lambda t: t + "\n[screen]\nkind = 'tv'\n", "screen.kind must be one of"),
    (lambda t: t.replace('venue = "mall"', 'venue = "mall"\nvenu = "x"'), "unknown key terminal.venu"),
    (lambda t: t.replace('venue = "mall"', 'venue = "casino"'), "terminal.venue unknown venue type 'casino'"),
    (lambda t: t.replace('id = "370102-H0001-01"', 'id = "a/b"'), "terminal.id must be"),
    (lambda t: re.sub(r'public_key = "04[0-9a-f]+"', 'public_key = "04abcd"', t), "hub.public_key"),
    (lambda t: re.sub(r'root_keys = \[.*\]', "root_keys = []", t), "trust.root_keys"),
    (lambda t: t.replace('data_keys = "data_keys.json"\n', ""), "missing required key trust.data_keys"),
    (lambda t: t + "\n[policy]\nred = 'maybe'\n", "policy.red"),
    (lambda t: t + "\n[policy]\nmax_age = -5\n", "policy.max_age"),
    (lambda t: t + "\n[time]\ntolerance = 'soon'\n", "time.tolerance"),
    (lambda t: t + "\n[policy\n", "not valid TOML"),
    (lambda t: t.replace("[hub]", "[hub]\nbroker = 'mqtt://10.1.2.3:1883'"), "only for a broker on this machine"),
    (lambda t: t.replace("[hub]", "[hub]\nbroker = 'mqtts://hub:8883'"), "hub.ca is required"),
    (lambda t: t.replace("[hub]", "[hub]\nbroker = 'tcp://hub'"), "hub.broker must be mqtts://"),
    (lambda t: t.replace("[hub]", "[hub]\nbroker = []"), "hub.broker must be a URL or a list of 1-8 URLs"),
    (lambda t: t.replace("[hub]", "[hub]\nbroker = [" + ", ".join(f"'mqtt://127.0.0.1:{p}'" for p in range(1, 10))
                         + "]"), "hub.broker must be a URL or a list of 1-8 URLs"),
    (lambda t: t.replace("[hub]", "[hub]\nbroker = ['mqtt://127.0.0.1:1', 'tcp://hub']"),
     "hub.broker [1] must be mqtts://"),
    (lambda t: t.replace("[hub]", "[hub]\nbroker = ['mqtt://127.0.0.1:1', 'mqtt://127.0.0.1:1']"),
     "hub.broker [1] mqtt://127.0.0.1:1 is listed twice"),
    (lambda t: t.replace("[hub]", "[hub]\nbroker = ['mqtt://127.0.0.1:1', 'mqtts://127.0.0.1:2']"),
     "hub.broker must all be mqtts:// or all mqtt://"),
    (lambda t: t.replace("[hub]", "[hub]\nbroker = ['mqtts://a:1', 'mqtts://b:2']"), "hub.ca is required"),
    (lambda t: t + "\n[metrics]\nlisten = '0.0.0.0:9105'\n", "metrics.listen"),
    # a rate no reader can be set to would never read a card: refused by run too (issue #12, 4)
    (lambda t: t + "\n[ss_card]\nbaud = 57600\n", "ss_card.baud must be one of 9600, 115200 "),
    (lambda t: t + "\n[id_card]\nbaud = 4800\n", "id_card.baud must be one of 115200, 57600, 38400, 19200, 9600 "),
    (lambda t: t + "\n[scanner]\nbaud = 4800\n", "scanner.baud must be one of 115200, 57600, 38400, 19200, 9600 "),
    (lambda t: t + "\n[scanner]\nkind = 'usb'\n", "scanner.kind must be one of serial, hid, not 'usb'"),
    (lambda t: t + "\n[scanner]\nsuffix = 'tab'\n", "scanner.suffix must be one of cr, lf, crlf"),
    (lambda t: t + "\n[scanner]\nprefix = ''\n", "scanner.prefix must be 1-16 characters"),
    (lambda t: t + "\n[scanner]\nprefix = '12345678901234567'\n", "scanner.prefix must be 1-16 characters"),
    (lambda t: t + "\n[scanner]\nprefix = \"A\\r\"\n", "scanner.prefix must be 1-16 characters without CR"),
    (lambda t: t + "\n[scanner]\nprefix = 2\n", "scanner.prefix must be"),
    (lambda t: t + "\n[scanner]\nkind = 'hid'\nport = '/dev/ttyACM0'\n",
     'scanner.port is for kind = "serial", this engine is kind = "hid"'),
    (lambda t: t + "\n[scanner]\ndevice = '/dev/input/event3'\n",
     'scanner.device is for kind = "hid", this engine is kind = "serial"'),
])
def test_errors_name_file_and_key(keyset, tmp_path, edit, message):
    p = write(tmp_path, edit(base(keyset)))
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(p)
    assert str(e.value).startswith(f"{p}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_broker_cluster_lists_up_to_eight_nodes_tried_in_order(keyset, tmp_path):
    nodes = [f"mqtt://127.0.0.1:{p}" for p in range(1, 9)]
    text = base(keyset).replace("[hub]", "[hub]\nbroker = [" + ", ".join(f"'{u}'" for u in nodes) + "]")
    assert cfgmod.load(write(tmp_path, text)).hub.brokers == tuple(nodes)
    one = base(keyset).replace("[hub]", "[hub]\nbroker = 'mqtt://127.0.0.1:1'")
    assert cfgmod.load(write(tmp_path, one)).hub.brokers == ("mqtt://127.0.0.1:1",)
    assert cfgmod.load(write(tmp_path, base(keyset))).hub.brokers == ()


def test_missing_hub_tls_files_do_not_stop_the_loader(keyset, tmp_path):
    """run starts without them (decides offline, the link retries until they come); only
    check-config insists (tests/test_cli.py)."""
    cfg = cfgmod.load(write(keyset, base(keyset).replace("[hub]", "[hub]\nbroker = 'mqtts://127.0.0.1:8883'\n"
                                                         "ca = 'no-ca.pem'\ncert = 'no.pem'\nkey = 'no.key'")))
    assert cfg.hub.key == keyset / "no.key" and not cfg.hub.key.exists()


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="no such file"):
        cfgmod.load(tmp_path / "nope.toml")
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(cfgmod.ConfigError, match="not UTF-8"):
        cfgmod.load(p)


def test_scanner_section(keyset, tmp_path):
    cfg = cfgmod.load(write(tmp_path, base(keyset)))
    assert (cfg.scanner.kind, cfg.scanner.where, cfg.scanner.baud, cfg.scanner.prefix, cfg.scanner.suffix) == \
        ("serial", None, 9600, None, "cr")                      # absent: no scan engine
    cfg = cfgmod.load(write(tmp_path, base(keyset) + '\n[scanner]\nport = "socket://127.0.0.1:7010"\n'
                            'baud = 115200\nprefix = "\\u0002]Q1"\nsuffix = "crlf"\n'))
    assert (cfg.scanner.where, cfg.scanner.baud, cfg.scanner.prefix, cfg.scanner.suffix) == \
        ("socket://127.0.0.1:7010", 115200, "\x02]Q1", "crlf")
    cfg = cfgmod.load(write(tmp_path, base(keyset) + '\n[scanner]\nkind = "hid"\n'
                            'device = "/dev/input/by-id/usb-engine-event-kbd"\nprefix = "1234567890123456"\n'))
    assert (cfg.scanner.kind, cfg.scanner.where, cfg.scanner.prefix) == \
        ("hid", "/dev/input/by-id/usb-engine-event-kbd", "1234567890123456")


def test_policy_overrides_apply_on_any_venue(keyset, tmp_path):
    cfg = cfgmod.load(write(tmp_path, base(keyset) + "\n[policy]\nmax_age = 30\nstar = 'review'\n"))
    assert (cfg.policy().max_age, cfg.policy().star) == (30, "review")
    assert (cfg.policy("hospital").max_age, cfg.policy("hospital").red) == (30, "review")


def example_keys(text: str) -> dict[str, list[str]]:
    """[section] → the keys the example sets or shows commented out, in order."""
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line):
            keys[m[1]] = []
        elif (m := re.match(r"#? ?(\w+) = ", line)) and keys:
            keys[list(keys)[-1]].append(m[1])
    return keys


def test_example_documents_every_key_and_nothing_else():
    text = (ROOT / "config.example.toml").read_text()
    tomllib.loads(text)
    declared = {section: list(cfgmod.settings(cls)) for section, cls in cfgmod.SECTIONS.items()}
    assert example_keys(text) == {**declared, "policy": list(FIELD_NAMES)}


def test_example_key_reader_sees_an_extra_or_missing_key():
    text = (ROOT / "config.example.toml").read_text()
    assert example_keys(text.replace("[relay]\n", "[relay]\n# channel = 2\n"))["relay"] == [
        "channel", "kind", "port", "pulse_ms"]
    assert "gap" not in example_keys(text.replace("gap = 1.5", "# (no gap)"))["camera"]


def test_every_key_has_a_one_line_doc():
    for section, cls in cfgmod.SECTIONS.items():
        for key, setting in cfgmod.settings(cls).items():
            assert setting.doc and "\n" not in setting.doc, f"{section}.{key}"


def test_a_loaded_config_cannot_be_changed(keyset_config):
    with pytest.raises(dataclasses.FrozenInstanceError):
        keyset_config.hub.broker = "mqtts://elsewhere:8883"
    with pytest.raises(dataclasses.FrozenInstanceError):
        keyset_config.camera = None
    with pytest.raises(TypeError):
        keyset_config.policy_overrides["max_age"] = 1
    with pytest.raises(AttributeError):
        keyset_config.root_keys.append(keyset_config.hub.public_key)


def test_key_files_must_be_private(keyset, capsys):
    from terminal.cli import main
    (keyset / "data_keys.json").chmod(0o644)
    rc = main(["verify", "--config", str(keyset / "config.toml"), "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "data_keys.json" in err and "chmod 600" in err


def _loop(d):
    """A symbolic link loop: d/loop-a → d/loop-b → d/loop-a."""
    (d / "loop-a").symlink_to("loop-b")
    (d / "loop-b").symlink_to("loop-a")
    return d / "loop-a"


@pytest.mark.parametrize("make, message", [
    (lambda d: write(d, "a = " + "[" * 5000 + "]" * 5000 + "\n"), "nested too deeply"),
    (lambda d: write(d, "a = " + "{b = " * 2000 + "1" + "}" * 2000 + "\n"), "nested too deeply"),
    (lambda d: write(d, "# " + "x" * cfgmod.MAX_BYTES + "\n"), f"larger than {cfgmod.MAX_BYTES} bytes"),
    (_loop, "Too many levels of symbolic links"),
    (lambda d: d, "not a regular file"),
])
def test_hostile_config_files(tmp_path, make, message):
    p = make(tmp_path)
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(p)
    assert str(e.value).startswith(f"{p}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_config_size_limit_both_sides(keyset, tmp_path):
    text = base(keyset)
    pad = cfgmod.MAX_BYTES - len(text.encode()) - 2  # "#", the padding, "\n"
    cfgmod.load(write(keyset, text + "#" + "x" * pad + "\n"))  # exactly MAX_BYTES: loads
    assert (keyset / "c.toml").stat().st_size == cfgmod.MAX_BYTES
    with pytest.raises(cfgmod.ConfigError, match="larger than"):
        cfgmod.load(write(keyset, text + "#" + "x" * (pad + 1) + "\n"))


@pytest.mark.parametrize("key", ["trust_list", "data_keys"])
def test_symlink_loop_named_in_config(keyset, key):
    _loop(keyset)
    p = write(keyset, re.sub(rf'^{key} = .*$', f'{key} = "loop-a"', base(keyset), flags=re.M))
    with pytest.raises(cfgmod.ConfigError, match=rf"^{re.escape(str(p))}: trust.{key} .*loop-a: symbolic link loop$"):
        cfgmod.load(p)


def _cli(*argv):
    from terminal.cli import main
    return main(list(argv))


HOSTILE_JSON = [
    ("trust.envelope.json", b"[" * 100_000 + b"]" * 100_000),                             # within 1 MiB
    ("data_keys.json", b'{"data_keys": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"),         # within 64 KiB
    ("data_keys.json", b'{"data_keys": {"1": "' + b"0" * 32 + b'"}}' + b" " * (1 << 16)),  # too big
]


@pytest.mark.parametrize("command, name, content", [("verify", *f) for f in HOSTILE_JSON] + [
    ("check-config", *f) for f in HOSTILE_JSON + [("device.pem", b"-" * (1 << 16) + b"-")]])
def test_hostile_trust_and_key_files_are_usage_errors(keyset, capsys, command, name, content):
    (keyset / name).write_bytes(content)
    argv = [command, "--config", str(keyset / "config.toml")] + (["x"] if command == "verify" else [])
    assert _cli(*argv) == 2
    err = capsys.readouterr().err
    assert name in err and "internal error" not in err and err.count("gate-terminal:") == 1


def test_files_at_their_size_limits_are_read(keyset, capsys):
    from terminal.crypto.keyfiles import MAX_BYTES
    from terminal.core.trust import MAX_TRUST_LIST_BYTES
    for name, limit in (("trust.envelope.json", MAX_TRUST_LIST_BYTES), ("data_keys.json", MAX_BYTES)):
        f = keyset / name
        f.write_bytes(f.read_bytes().rstrip() + b" " * (limit - len(f.read_bytes().rstrip())))
        assert f.stat().st_size == limit  # JSON allows trailing white space
    assert _cli("check-config", "--config", str(keyset / "config.toml")) == 0
    (keyset / "data_keys.json").write_bytes((keyset / "data_keys.json").read_bytes() + b" ")
    assert _cli("check-config", "--config", str(keyset / "config.toml")) == 2
    assert f"larger than {MAX_BYTES} bytes" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "verify"])
@pytest.mark.parametrize("fifo", ["config", "data keys"])
def test_fifo_is_refused_not_waited_on(keyset, command, fifo):
    """A FIFO blocks open() until a writer comes: refuse it, never wait (run would be deaf to
    SIGTERM). In a child process with a deadline, so that a regression fails instead of hanging."""
    os.mkfifo(keyset / "fifo", 0o600)
    p = keyset / "fifo" if fifo == "config" else write(
        keyset, base(keyset).replace('data_keys = "data_keys.json"', 'data_keys = "fifo"'))
    proc = subprocess.run([sys.executable, "-m", "terminal", command, "--config", str(p)]
                          + (["x"] if command == "verify" else []),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"gate-terminal: error: {keyset / 'fifo'}: not a regular file"


@pytest.mark.parametrize("tid", ["370102-H0001-03", "370102-T0001-01", "000000-7-00", "999999-ABCDEFGH12345678-99"])
def test_terminal_ids_of_the_tid_form(keyset, tid):
    p = write(keyset, base(keyset).replace('id = "370102-H0001-01"', f'id = "{tid}"'))
    assert cfgmod.load(p).terminal_id == tid


@pytest.mark.parametrize("tid", ["hub", "", "370102-H0001-3", "370102-H0001-003", "37010-H0001-03",
                                 "3701020-H0001-03", "370102--03", "370102-h0001-03", "370102-H0001-0a",
                                 "370102-ABCDEFGH123456789-99", "370102-H0001-03/x", "370102-H00+1-03",
                                 "370102-H0001-03\\n", "３７０１０２-H0001-03"])
def test_terminal_ids_not_of_the_tid_form(keyset, tid):
    p = write(keyset, base(keyset).replace('id = "370102-H0001-01"', f'id = "{tid}"'))
    with pytest.raises(cfgmod.ConfigError, match=r"terminal\.id must be a terminal id like 370102-H0001-03"):
        cfgmod.load(p)


# --- every range on both sides, through the TOML loader -----------------------------------------------

# (section, key): (lo, hi, a value just below lo, just above hi, the default); from the sections' declarations
RANGES = {
    ("retention", "days"): (1, 3650, 0, 3651, 21),
    ("time", "tolerance"): (0, 3600, -0.01, 3600.01, 5.0),
    ("hub", "query_timeout"): (0.1, 30, 0.09, 30.01, 1.5),
    ("update", "health_seconds"): (10, 3600, 9.99, 3600.01, 120.0),
    ("camera", "width"): (160, 4096, 159, 4097, 640),
    ("camera", "height"): (120, 4096, 119, 4097, 480),
    ("camera", "fps"): (1, 120, 0, 121, 30),
    ("camera", "gap"): (0.2, 10, 0.19, 10.01, 1.5),
    ("scanner", "gap"): (0.2, 10, 0.19, 10.01, 1.5),
    ("hub", "alarm_hub_minutes"): (1, 1440, 0, 1441, 10),
    ("hub", "alarm_outbox_minutes"): (1, 10080, 0, 10081, 30),
    ("trust", "stale_grace_hours"): (0, 8760, -1, 8761, 24),
    ("relay", "pulse_ms"): (100, 10000, 99, 10001, 800),
    ("screen", "width"): (240, 4096, 239, 4097, 800),
    ("screen", "height"): (240, 4096, 239, 4097, 480),
    ("screen", "result_seconds"): (0.5, 60, 0.49, 60.01, 3.0),
    ("audio", "volume"): (0, 100, -1, 101, 80),
    ("audio", "quiet_volume"): (0, 100, -1, 101, 30),
}


@pytest.fixture(scope="module")
def base_text(tmp_path_factory):
    from sim.devkeys import write_key_set
    d = tmp_path_factory.mktemp("keys")
    write_key_set(d)
    return (d / "config.toml").read_text()


def with_key(text, section, key, toml_value):
    line = f"{key} = {toml_value}\n"
    if f"[{section}]\n" in text:
        return text.replace(f"[{section}]\n", f"[{section}]\n{line}", 1)
    return text + f"\n[{section}]\n{line}"


def loaded(cfg, section, key):
    return getattr(getattr(cfg, section), key)


def is_seconds(section, key):
    return cfgmod.settings(cfgmod.SECTIONS[section])[key].convert.__qualname__.startswith("_seconds")


def test_ranges_table_covers_every_ranged_key():
    ranged = {(s, k) for s, cls in cfgmod.SECTIONS.items() for k, setting in cfgmod.settings(cls).items()
              if setting.convert.__qualname__.startswith(("_int_range", "_seconds"))}
    assert ranged == set(RANGES)


def test_defaults(base_text, tmp_path):
    cfg = cfgmod.load(write(tmp_path, base_text))
    for (section, key), (*_, default) in RANGES.items():
        value = loaded(cfg, section, key)
        assert value == default and type(value) is type(default), (section, key)


@pytest.mark.parametrize("section, key", sorted(RANGES))
def test_range_accepts_both_bounds(base_text, tmp_path, section, key):
    lo, hi, *_ = RANGES[section, key]
    for v in (lo, hi):
        cfg = cfgmod.load(write(tmp_path, with_key(base_text, section, key, repr(v))))
        value = loaded(cfg, section, key)
        assert value == v
        assert type(value) is (float if is_seconds(section, key) else int)   # seconds are always floats


@pytest.mark.parametrize("section, key", sorted(RANGES))
def test_range_refuses_outside_and_other_types(base_text, tmp_path, section, key):
    lo, hi, below, above, _ = RANGES[section, key]
    seconds = is_seconds(section, key)
    bad = [repr(below), repr(above), "true", "false", f'"{lo}"', "[1]"]
    if not seconds:
        bad.append(repr(float(lo)))     # an integer key takes no float, not even a whole one
    for v in bad:
        p = write(tmp_path, with_key(base_text, section, key, v))
        with pytest.raises(cfgmod.ConfigError) as e:
            cfgmod.load(p)
        what = f"a number of seconds from {lo} to {hi}" if seconds else f"an integer from {lo} to {hi}"
        assert str(e.value) == f"{p}: {section}.{key} must be {what}", v


def test_policy_bounds_through_the_loader(base_text, tmp_path):
    """nat_hours = 0 is "not required", a value to accept, not a missing one."""
    for value, expected in (("0", 0), ("8760", 8760)):
        cfg = cfgmod.load(write(tmp_path, base_text + f"\n[policy]\nnat_hours = {value}\n"))
        assert cfg.policy().nat_hours == expected and cfg.policy_overrides == {"nat_hours": expected}
    for value, shown in (("-1", "-1"), ("8761", "8761"), ("72.0", "72.0"), ("true", "True")):
        p = write(tmp_path, base_text + f"\n[policy]\nnat_hours = {value}\n")
        with pytest.raises(cfgmod.ConfigError) as e:
            cfgmod.load(p)
        assert str(e.value) == f"{p}: policy.nat_hours: must be an integer from 0 to 8760, not {shown}"
    cfg = cfgmod.load(write(tmp_path, base_text))
    assert cfg.policy_overrides == {} and cfg.policy() == cfgmod.pol.PRESETS["mall"]


@pytest.mark.parametrize("minutes, ok", [(0, False), (1, True), (10, True), (1440, True), (1441, False),
                                         (2.5, False), ("10", False)])
def test_alarm_hub_minutes_limits(keyset, minutes, ok):
    p = write(keyset, base(keyset).replace("[hub]", f"[hub]\nalarm_hub_minutes = {minutes!r}"))
    if ok:
        assert cfgmod.load(p).hub.alarm_hub_minutes == minutes
    else:
        with pytest.raises(cfgmod.ConfigError, match=r"hub\.alarm_hub_minutes must be an integer from 1 to 1440"):
            cfgmod.load(p)


def test_alarm_hub_minutes_default(keyset_config):
    assert keyset_config.hub.alarm_hub_minutes == 10


def test_a_reload_keeps_the_running_device_and_hub_settings_but_takes_the_hub_key(keyset, keyset_config):
    """SIGHUP (daemon._reload): devices and the hub link stay until a restart; the hub key, the
    verifier's, and everything else come from the new file."""
    from terminal.crypto.sm2 import PrivateKey
    running, new_key = keyset_config, PrivateKey.generate().public_key
    same = cfgmod.load(keyset / "config.toml")
    assert same.keeping_restart_settings(running) is same
    only_key = dataclasses.replace(same, hub=dataclasses.replace(same.hub, public_key=new_key))
    assert only_key.keeping_restart_settings(running) is only_key
    changed = dataclasses.replace(only_key, terminal=dataclasses.replace(same.terminal, venue="hospital"),
                                  camera=dataclasses.replace(same.camera, gap=5.0),
                                  hub=dataclasses.replace(only_key.hub, prefix="x/y"))
    kept = changed.keeping_restart_settings(running)
    assert (kept.camera, kept.hub.prefix, kept.hub.public_key, kept.venue) == (running.camera, "hc/v1", new_key,
                                                                                "hospital")
    assert changed.camera.gap == 5.0  # the reloaded config itself is not changed
