"""Configuration: typed, every key documented, errors that name the file and the key."""
from __future__ import annotations

import re
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
    (lambda t: t + "\n[metrics]\nlisten = '0.0.0.0:9105'\n", "metrics.listen"),
])
def test_errors_name_file_and_key(keyset, tmp_path, edit, message):
    p = write(tmp_path, edit(base(keyset)))
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(p)
    assert str(e.value).startswith(f"{p}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="no such file"):
        cfgmod.load(tmp_path / "nope.toml")
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(cfgmod.ConfigError, match="not UTF-8"):
        cfgmod.load(p)


def test_policy_overrides_apply_on_any_venue(keyset, tmp_path):
    cfg = cfgmod.load(write(tmp_path, base(keyset) + "\n[policy]\nmax_age = 30\nstar = 'review'\n"))
    assert (cfg.policy().max_age, cfg.policy().star) == (30, "review")
    assert (cfg.policy("hospital").max_age, cfg.policy("hospital").red) == (30, "review")


def test_example_documents_every_key():
    text = (ROOT / "config.example.toml").read_text()
    tomllib.loads(text)
    for section, keys in cfgmod.SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            assert re.search(rf"^#? ?{key} = ", text, re.M), f"{section}.{key} undocumented"
    for field in FIELD_NAMES:
        assert re.search(rf"^# {field} = ", text, re.M), f"policy.{field} undocumented"


def test_key_files_must_be_private(keyset, capsys):
    from terminal.cli import main
    (keyset / "data_keys.json").chmod(0o644)
    rc = main(["verify", "--config", str(keyset / "config.toml"), "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "data_keys.json" in err and "chmod 600" in err
