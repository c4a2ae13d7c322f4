"""Spoken prompts and tones: heard as sound (length, loudness, pitch), cached once, played on
their own thread with the newest cutting the one playing, quiet hours, the speaker's alarm."""
from __future__ import annotations

import dataclasses
import logging
import stat
import subprocess
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from drivers.audio import AplaySink, AudioError
from drivers.relay import PulseOutcome
from sim.audio_sink import WavFileSink
from sim.issuer import Issuer, Person
from terminal import config as cfgmod
from terminal.audio import prompts as P
from terminal.audio import tones
from terminal.audio.bank import Espeak, SoundBank, wav_samples
from terminal.audio.output import AudioOut, in_quiet_hours, open_audio
from terminal.core import reasons as R
from terminal.core.policy import ALLOW, DENY, REVIEW
from terminal.core.presentation import Presentation
from terminal.daemon import Daemon
from terminal.inputs.devices import DeviceStatus
from terminal.inputs.registry import AUDIO_SINKS
from terminal.screen import texts

from waiting import wait_for

RMS_FLOOR = 0.03   # espeak-ng's speech is ~0.12, silence 0


def audio_settings(**changes) -> cfgmod.AudioSection:
    """[audio] with its documented defaults, and ``changes``."""
    values = {k: (s.convert(s.default) if s.default is not None else None)
              for k, s in cfgmod.settings(cfgmod.AudioSection).items()}
    return cfgmod.AudioSection(**{**values, **changes})


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples ** 2))) if len(samples) else 0.0


def seconds(path: Path) -> float:
    s, rate = wav_samples(path)
    return len(s) / rate


def dominant_hz(samples: np.ndarray, rate: int = tones.RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


class CountingEspeak(Espeak):
    """The real espeak-ng, counting what it renders."""
    calls: list[str]

    def render(self, text, dest):
        self.calls.append(text)
        super().render(text, dest)


def espeak(version: str | None = None) -> CountingEspeak:
    real = Espeak.find()
    assert real is not None, "espeak-ng is not installed (scripts/setup installs it)"
    e = CountingEspeak(real.program, version or real.version)
    object.__setattr__(e, "calls", [])
    return e


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> SoundBank:
    return SoundBank.build(tmp_path_factory.mktemp("audio"), (80, 30))


# ---- the prompts, as sound -------------------------------------------------------------------

@pytest.mark.parametrize("key", list(P.PROMPTS))
def test_every_prompt_is_speech_of_plausible_length(bank, key):
    text = P.PROMPTS[key].text
    sentence, rate = wav_samples(bank.cache_dir / "speech" / f"{Espeak.find().key(text)}.wav")
    length = len(sentence) / rate
    assert 0.4 <= length <= 5.0, (text, length)
    # about 0.15-0.5 s a syllable: a sentence, not a click, not a voice spelling out code points
    assert 0.15 <= length / len(text.replace("，", "")) <= 0.5, (text, length)
    assert rms(sentence) > RMS_FLOOR, text
    # speech comes and goes: quiet gaps between syllables, not one steady sound
    frames = sentence[: len(sentence) // 441 * 441].reshape(-1, 441)   # 20 ms frames
    loud = np.sqrt((frames ** 2).mean(axis=1)) > RMS_FLOOR
    assert 0.3 < loud.mean() < 0.98, (text, loud.mean())
    # what is played: its tone (if it has one), then the sentence, at the configured volume
    played, _ = wav_samples(bank.path(key, P.SPEECH, 80))
    assert len(played) / rate >= length
    assert rms(played) > RMS_FLOOR * 0.64


def test_longer_sentences_take_longer(bank):
    def length(key):
        return seconds(bank.cache_dir / "speech" / f"{Espeak.find().key(P.PROMPTS[key].text)}.wav")
    assert length("allow") < length("deny") < length("deny_health") < length("device_fault")


def test_tones_are_short_distinct_and_loud(bank):
    found = {}
    for name in tones.TONES:
        s, rate = wav_samples(bank.path(name, P.TONE, 80))
        assert 0.2 <= len(s) / rate <= 0.8, name
        assert rms(s) > RMS_FLOOR, name
        found[name] = (round(len(s) / rate, 2), round(dominant_hz(s)))
    assert len(set(found.values())) == 3
    hz = {name: f[1] for name, f in found.items()}
    assert hz["deny"] < 400 < hz["review"] < 1200 < hz["allow"]   # low buzz, mid beeps, high chime


def test_volume_scales_the_sound_and_quiet_is_quieter(bank):
    loud, _ = wav_samples(bank.path("deny", P.SPEECH, 80))
    quiet, _ = wav_samples(bank.path("deny", P.SPEECH, 30))
    assert len(loud) == len(quiet)
    assert rms(quiet) < rms(loud) * 0.2


# ---- the cache -------------------------------------------------------------------------------

def test_cache_is_reused_and_rendered_again_on_a_change(tmp_path, monkeypatch):
    e = espeak()
    first = SoundBank.build(tmp_path, (80,), e)
    assert sorted(e.calls) == sorted(p.text for p in P.PROMPTS.values()) and first.rendered == len(P.PROMPTS)
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "speech").iterdir()}

    e.calls.clear()
    again = SoundBank.build(tmp_path, (80,), e)
    assert e.calls == [] and again.rendered == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "speech").iterdir()} == files
    assert again.path("deny", P.SPEECH, 80) == first.path("deny", P.SPEECH, 80)

    # one sentence changed: that one rendered, its old rendering gone
    changed = dict(P.PROMPTS, allow=dataclasses.replace(P.PROMPTS["allow"], text="请您通行"))
    monkeypatch.setattr(P, "PROMPTS", changed)
    SoundBank.build(tmp_path, (80,), e)
    assert e.calls == ["请您通行"]
    assert len(list((tmp_path / "speech").iterdir())) == len(P.PROMPTS)

    # a new espeak-ng: everything again
    newer = espeak("eSpeak NG text-to-speech: 9.99")
    SoundBank.build(tmp_path, (80,), newer)
    assert len(newer.calls) == len(P.PROMPTS)
    assert len(list((tmp_path / "speech").iterdir())) == len(P.PROMPTS)


def test_ready_files_follow_the_volumes(tmp_path):
    e = espeak()
    SoundBank.build(tmp_path, (80, 30), e)
    both = set((tmp_path / "ready").iterdir())
    b = SoundBank.build(tmp_path, (80,), e)
    assert set((tmp_path / "ready").iterdir()) < both   # the volume 30 files are gone
    with pytest.raises(KeyError):
        b.path("deny", P.SPEECH, 30)


def test_a_failed_rendering_is_played_as_its_tone(tmp_path, caplog):
    def run(argv, **kw):
        if "--version" in argv:
            return subprocess.CompletedProcess(argv, 0, "eSpeak NG 1.51", "")
        return subprocess.CompletedProcess(argv, 1, "", "voice cmn not found")
    broken = Espeak("/usr/bin/espeak-ng", "eSpeak NG 1.51", run)
    b = SoundBank.build(tmp_path, (80,), broken)
    assert b.rendered == 0
    assert "voice cmn not found" in caplog.text
    assert b.path("deny_health", P.SPEECH, 80).read_bytes() == b.path("deny", P.TONE, 80).read_bytes()
    assert b.path("guide_aim", P.SPEECH, 80).read_bytes() == b.path("review", P.TONE, 80).read_bytes()


def test_a_rendering_that_is_not_a_sentence_is_refused(tmp_path, caplog):
    def run(argv, **kw):  # a "rendering" of 20 s of noise: a wrong voice spelling things out
        tones.write_wav(Path(argv[argv.index("-w") + 1]), np.random.default_rng(1).uniform(-.5, .5, 20 * tones.RATE))
        return subprocess.CompletedProcess(argv, 0, "", "")
    b = SoundBank.build(tmp_path, (80,), Espeak("espeak-ng", "x", run))
    assert b.rendered == 0 and "not a sentence" in caplog.text
    assert list((tmp_path / "speech").iterdir()) == []


def test_without_espeak_every_prompt_is_a_tone(tmp_path, caplog):
    b = SoundBank.build(tmp_path, (80,), find=lambda: None)
    assert not b.spoken and "espeak-ng not found" in caplog.text
    assert b.path("allow", P.SPEECH, 80).read_bytes() == b.path("allow", P.TONE, 80).read_bytes()


# ---- which prompt an outcome gets ------------------------------------------------------------

def test_every_deny_reason_has_a_prompt_of_its_group():
    grouped = [r for group in P.DENY_GROUPS.values() for r in group]
    assert len(grouped) == len(set(grouped))
    # every reason a deny can carry; ok and staff_override allow, unreadable is only ever a review
    assert set(grouped) == set(R.ALL) - {R.OK, R.STAFF_OVERRIDE, R.UNREADABLE}
    assert P.outcome_prompt(DENY, R.RED_CODE) == "deny_health"
    assert P.outcome_prompt(DENY, R.EXPIRED) == "deny_refresh"
    assert P.outcome_prompt(DENY, R.BAD_SIGNATURE) == "deny_invalid"
    assert P.outcome_prompt(DENY, R.CLOCK_UNTRUSTED) == "device_fault"
    assert P.outcome_prompt(DENY, "something_new") == "deny"
    # a staff credential refused: its own sentence, whatever token reason refused it
    for reason in (R.BAD_SIGNATURE, R.BAD_FORMAT, R.EXPIRED, R.REPLAYED):
        assert P.PROMPTS[P.outcome_prompt(DENY, reason, method="staff")].text == "工作人员凭证无效"
    for reason in (R.NO_PENDING_REVIEW, R.REVIEW_EXPIRED):
        assert P.PROMPTS[P.outcome_prompt(DENY, reason, method="staff")].text == "没有待核验人员"
    assert P.outcome_prompt(DENY, R.CLOCK_UNTRUSTED, method="staff") == "device_fault"
    assert {P.PROMPTS[k].tone for k in P.DENY_GROUPS} == {DENY}


def test_allow_review_and_staff_override_prompts():
    assert P.PROMPTS[P.outcome_prompt(ALLOW, R.OK)].text == "请通行"
    assert P.PROMPTS[P.outcome_prompt(ALLOW, P.STAFF_OVERRIDE)].text == "工作人员已放行"
    assert P.PROMPTS[P.outcome_prompt(REVIEW, R.RED_CODE)].text == "请人工核验"
    assert P.outcome_prompt("maybe", R.OK) == "review"
    # the gate cannot open: never 请通行
    assert P.PROMPTS[P.outcome_prompt(ALLOW, R.OK, gate_ok=False)].text == "请联系工作人员开门"
    assert P.outcome_prompt(ALLOW, P.STAFF_OVERRIDE, gate_ok=False) == "open_by_staff"
    assert P.NOTICE_PROMPTS.keys() <= {texts.SYSTEM_ERROR, texts.CARD_UNREAD}


def test_modes_by_outcome():
    default = audio_settings().modes()
    assert P.mode_for("allow", ALLOW, default) == P.TONE
    assert P.mode_for("deny_health", DENY, default) == P.SPEECH
    assert P.mode_for("review", REVIEW, default) == P.SPEECH
    silent_pass = audio_settings(on_allow="silent").modes()
    assert P.mode_for("allow", ALLOW, silent_pass) == P.SILENT
    assert P.mode_for("open_by_staff", ALLOW, silent_pass) == P.SPEECH    # the person must act
    assert P.mode_for("staff_override", ALLOW, silent_pass) == P.SPEECH   # as reviews are
    assert P.mode_for("staff_override", ALLOW, audio_settings(on_review="tone").modes()) == P.TONE
    assert P.mode_for("device_fault", DENY, audio_settings(on_deny="silent").modes()) == P.SPEECH


# ---- quiet hours -----------------------------------------------------------------------------

def t(hhmmss: str):
    return datetime.strptime(hhmmss, "%H:%M:%S").time()


def test_quiet_hours_across_midnight_at_both_boundaries():
    q = (t("22:00:00"), t("07:00:00"))
    assert not in_quiet_hours(t("21:59:59"), *q)
    assert in_quiet_hours(t("22:00:00"), *q)
    assert in_quiet_hours(t("00:00:00"), *q)
    assert in_quiet_hours(t("06:59:59"), *q)
    assert not in_quiet_hours(t("07:00:00"), *q)
    assert not in_quiet_hours(t("12:00:00"), *q)


def test_quiet_hours_within_a_day_and_none():
    q = (t("12:00:00"), t("14:00:00"))
    assert [in_quiet_hours(t(x), *q) for x in ("11:59:59", "12:00:00", "13:59:59", "14:00:00")] == \
        [False, True, True, False]
    assert not in_quiet_hours(t("23:00:00"), None, None)


class Clock:
    def __init__(self, hhmmss):
        self.at = datetime.combine(datetime(2026, 12, 1), t(hhmmss))

    def __call__(self):
        return self.at


@pytest.fixture
def speaker(bank, tmp_path):
    """An AudioOut on the simulator's WAV sink, with a settable wall clock; stopped after."""
    made = []

    def make(sink=None, clock=None, **settings):
        sink = sink or WavFileSink(tmp_path / "spoken")
        devices = DeviceStatus()
        out = AudioOut(audio_settings(**settings), bank, sink, devices, now=clock or Clock("12:00:00"))
        out.start()
        made.append(out)
        return out, sink, devices
    yield make
    for out in made:
        out.stop()


def test_quiet_volume_from_the_first_quiet_second(speaker):
    clock = Clock("21:59:59")
    out, sink, _ = speaker(clock=clock, quiet_from=t("22:00:00"), quiet_until=t("07:00:00"))
    volumes = []
    for at in ("21:59:59", "22:00:00", "06:59:59", "07:00:00"):
        clock.at = clock.at.replace(hour=int(at[:2]), minute=int(at[3:5]), second=int(at[6:]))
        n = len(out.history)
        out.announce(DENY, R.RED_CODE)
        wait_for(lambda: len(out.history) > n, f"the prompt at {at}")
        volumes.append(out.history[-1].volume)
    assert volumes == [80, 30, 30, 80]
    assert len(sink.recorded()) == 4


# ---- playing ---------------------------------------------------------------------------------

def test_a_decision_is_played_and_its_latency_recorded(speaker, bank):
    out, sink, devices = speaker()
    wait_for(lambda: sink.opens == 1 and "audio" not in devices.errors(), "the speaker open")
    decided = time.monotonic_ns()
    out.announce(DENY, R.RED_CODE, seq=7, decided_ns=decided)
    wait_for(lambda: len(sink.recorded()) == 1, "the prompt recorded")
    rec, played = sink.recorded()[0], out.history[0]
    assert (played.key, played.mode, played.seq) == ("deny_health", P.SPEECH, 7)
    assert played.started_ns == rec.started_ns >= decided
    assert 0 <= played.latency_ms < 5000      # a bound on failure, not a speed test (benchmarks/)
    assert rec.file.read_bytes() == bank.path("deny_health", P.SPEECH, 80).read_bytes()


def test_tone_on_allow_and_silent_on_pass(speaker):
    out, sink, _ = speaker()
    out.announce(ALLOW, R.OK)
    wait_for(lambda: len(out.history) == 1)
    assert (out.history[0].key, out.history[0].mode) == (ALLOW, P.TONE)
    quiet, qsink, _ = speaker(sink=WavFileSink(sink.dir / "other"), on_allow="silent")
    quiet.announce(ALLOW, R.OK)
    quiet.announce(DENY, R.EXPIRED)   # latest wins, and is played
    wait_for(lambda: len(quiet.history) == 1)
    assert quiet.history[0].key == "deny_refresh"
    quiet.announce(ALLOW, R.OK)
    wait_for(lambda: quiet.dropped >= 1, "the silent allow")
    assert len(quiet.history) == 1 and len(qsink.recorded()) == 1


def test_a_new_prompt_cuts_the_one_playing(speaker):
    out, sink, _ = speaker()
    out.announce(DENY, R.NAT_MISSING)   # about 4 s
    wait_for(lambda: len(sink.recorded()) == 1)
    wait_for(lambda: sink.busy(), "the first prompt playing")
    out.announce(ALLOW, R.OK)
    wait_for(lambda: len(sink.recorded()) == 2)
    first, second = sink.recorded()
    assert first.played is not None and 0 <= first.played < first.seconds
    assert second.started_ns - first.started_ns == pytest.approx(first.played * 1e9, abs=1e6)
    assert second.played is None


def test_latest_wins_when_requests_come_faster_than_the_thread(bank, tmp_path):
    out = AudioOut(audio_settings(), bank, WavFileSink(tmp_path), DeviceStatus())   # not started
    for reason in (R.RED_CODE, R.EXPIRED, R.BAD_SIGNATURE):
        out.announce(DENY, reason)
    out.start()
    try:
        wait_for(lambda: out.history)
        assert [p.key for p in out.history] == ["deny_invalid"]
    finally:
        out.stop()


def test_no_speaker_raises_audio_down_and_recovers(speaker, tmp_path):
    sink = WavFileSink(tmp_path / "usb-speaker")
    sink.unplug()
    out, sink, devices = speaker(sink=sink)
    wait_for(lambda: "audio" in devices.errors(), "audio_down")
    assert list(devices.alarms()) == ["audio_down"]
    assert texts.alarm_banner(devices.alarms()) == ["扬声器故障"]
    out.announce(DENY, R.RED_CODE)                       # dropped, and nothing else stops
    wait_for(lambda: out.dropped == 1)
    assert sink.recorded() == []
    sink.replug()
    wait_for(lambda: "audio" not in devices.errors(), "the speaker back", timeout=10)
    out.announce(REVIEW, R.RED_CODE)
    wait_for(lambda: len(sink.recorded()) == 1)
    assert out.history[-1].key == "review"


def test_a_speaker_lost_mid_prompt_raises_audio_down(speaker):
    out, sink, devices = speaker()
    out.announce(DENY, R.NAT_MISSING)
    wait_for(lambda: sink.busy(), "the prompt playing")
    sink.unplug()
    wait_for(lambda: "audio" in devices.errors(), "audio_down while playing")


# ---- the ALSA sink (aplay) -------------------------------------------------------------------

def test_aplay_without_a_sound_card_is_an_audio_error(bank):
    sink = AplaySink("hw:77")
    with pytest.raises(AudioError, match="hw:77"):
        sink.open(bank.path("allow", P.TONE, 80))


def test_aplay_plays_on_alsas_null_device(bank):
    sink = AplaySink("null")
    sink.open(bank.path("allow", P.TONE, 80))
    sink.play(bank.path("deny", P.SPEECH, 80))
    wait_for(lambda: not sink.busy(), "aplay done")
    sink.check()      # played without error
    sink.close()


def test_aplay_failing_mid_run_is_reported_by_check(bank, tmp_path):
    fake = tmp_path / "aplay"
    fake.write_text("#!/bin/sh\necho 'aplay: pcm_write:2146: write error: No such device' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    sink = AplaySink("default", program=str(fake))
    sink.play(bank.path("deny", P.SPEECH, 80))
    wait_for(lambda: not sink.busy())
    with pytest.raises(AudioError, match="No such device"):
        sink.check()


def test_aplay_a_new_prompt_ends_the_process_of_the_old(bank, tmp_path):
    fake = tmp_path / "aplay"   # plays "forever": only being cut ends it
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    sink = AplaySink("default", program=str(fake))
    sink.play(bank.path("deny", P.SPEECH, 80))
    first = sink._proc
    sink.play(bank.path("allow", P.TONE, 80))
    assert first.poll() is not None           # ended before the new one started
    assert sink.busy()
    sink.check()                               # being cut is not a failure
    sink.close()
    assert not sink.busy()


# ---- configuration and the daemon ------------------------------------------------------------

def test_audio_config(tmp_path, vector_config):
    base = vector_config.read_text()

    def load(extra):
        vector_config.write_text(base + "\n[audio]\n" + extra)
        return cfgmod.load(vector_config).audio

    a = load('kind = "alsa"\nquiet_from = "22:30"\nquiet_until = 07:00:00\non_allow = "silent"\n')
    assert (a.kind, a.device, a.volume, a.quiet_from, a.quiet_until) == ("alsa", "default", 80, t("22:30:00"),
                                                                         t("07:00:00"))
    assert a.modes() == {ALLOW: "silent", DENY: "speech", REVIEW: "speech"}
    for bad, says in (('quiet_from = "24:00"\nquiet_until = "07:00"', "audio.quiet_from"),
                      ('quiet_from = "22:00"', "go together"),
                      ('quiet_from = "07:00"\nquiet_until = "07:00"', "must differ"),
                      ("volume = 101", "audio.volume"), ('on_deny = "beep"', "audio.on_deny"),
                      ('kind = "ALSA!"', "audio.kind"), ('loud = true', "unknown key audio.loud")):
        with pytest.raises(cfgmod.ConfigError, match=says):
            load(bad)
    assert load("volume = 0").volume == 0 and load("volume = 100").volume == 100


def test_the_simulators_sink_is_registered():
    assert AUDIO_SINKS.get("wavfile") is not None
    assert AUDIO_SINKS.get("alsa") is not None


def test_daemon_speaks_its_decisions_and_carries_on_without_a_speaker(keyset, keyset_config, caplog):
    caplog.set_level(logging.INFO)
    issuer = Issuer.from_dir(keyset)
    results = []
    sink = WavFileSink(keyset / "spoken")
    daemon = Daemon(keyset_config, audio_sink=sink, on_result=lambda p, r: results.append(r))
    daemon.start()
    try:
        assert (keyset / "state" / "audio" / "speech").is_dir()   # rendered at start
        for person in (Person(status="red"), Person()):
            daemon._put(Presentation("qr", time.monotonic_ns(), issuer.issue(person)))
            wait_for(lambda: len(daemon.audio.history) == len(results) == (1 if person.status == "red" else 2))
        assert [(r.decision, r.reason) for r in results] == [(DENY, R.RED_CODE), (ALLOW, R.OK)]
        assert [(p.key, p.seq) for p in daemon.audio.history] == [("deny_health", results[0].seq),
                                                                 ("allow", results[1].seq)]
        assert all(p.latency_ms >= 0 for p in daemon.audio.history)
        sink.unplug()
        daemon._notice(texts.SYSTEM_ERROR)
        wait_for(lambda: "audio" in daemon.devices.errors())
        daemon._put(Presentation("qr", time.monotonic_ns(), issuer.issue(Person())))
        wait_for(lambda: len(results) == 3)          # decided without a speaker
        assert results[-1].decision == ALLOW
    finally:
        daemon.stop()


def test_open_audio_renders_into_the_cache_dir(tmp_path):
    out = open_audio(audio_settings(), tmp_path / "cache", WavFileSink(tmp_path / "s"), DeviceStatus())
    assert out.bank.spoken
    assert len(list((tmp_path / "cache" / "speech").iterdir())) == len(P.PROMPTS)


class DeadRelay:
    """A wired relay whose line is gone: every pulse is dropped."""
    wired = True
    error = "LinkDown: /dev/gate/relay: gone"

    def pulse(self, ms):
        return PulseOutcome(False)

    def close(self):
        pass


def test_an_allow_at_a_shut_gate_is_never_said_as_pass(keyset, keyset_config):
    issuer = Issuer.from_dir(keyset)
    results = []
    daemon = Daemon(keyset_config, relay=DeadRelay(), audio_sink=WavFileSink(keyset / "spoken"),
                    on_result=lambda p, r: results.append(r))
    daemon.start()
    try:
        daemon._put(Presentation("qr", time.monotonic_ns(), issuer.issue(Person())))
        wait_for(lambda: len(daemon.audio.history) == 1)
    finally:
        daemon.stop()
    assert (results[0].decision, results[0].gate) == (ALLOW, "fault")
    played = daemon.audio.history[0]
    assert (played.key, played.mode) == ("open_by_staff", P.SPEECH)     # 请联系工作人员开门, not a pass tone


def test_the_audio_thread_on_aplay_with_and_without_a_card(speaker):
    """The machine's ALSA: ``null`` plays (and throws the sound away), ``hw:77`` is no card."""
    out, _, devices = speaker(sink=AplaySink("null"))
    out.announce(DENY, R.EXPIRED, seq=3)
    wait_for(lambda: out.history, "the prompt through aplay")
    assert (out.history[0].key, out.history[0].seq) == ("deny_refresh", 3) and devices.errors() == {}
    out, _, devices = speaker(sink=AplaySink("hw:77"))
    wait_for(lambda: "audio" in devices.errors(), "audio_down without a sound card")
    assert "hw:77" in devices.errors()["audio"]
    out.announce(DENY, R.EXPIRED)
    wait_for(lambda: out.dropped == 1)
    assert out.history == []


def test_camera_guidance_is_said_when_it_changes_or_after_guide_repeat(bank, tmp_path):
    """The screen repeats a hint every 0.7 s while a code stays unreadable; the voice says it when
    it changes, and the same hint again only GUIDE_REPEAT seconds later (both sides)."""
    from terminal.audio.output import GUIDE_REPEAT
    out = AudioOut(audio_settings(), bank, WavFileSink(tmp_path), DeviceStatus())   # not started: requests only
    said = []
    out.say = lambda key, decided_ns=None: said.append(key)
    assert out.guide("guide_closer", now=100.0)
    assert not out.guide("guide_closer", now=100.7)
    assert not out.guide("guide_closer", now=100.0 + GUIDE_REPEAT - 0.001)
    assert out.guide("guide_closer", now=100.0 + GUIDE_REPEAT)
    assert out.guide("guide_brighter", now=100.0 + GUIDE_REPEAT + 0.1)     # a new hint at once
    assert said == ["guide_closer", "guide_closer", "guide_brighter"]
