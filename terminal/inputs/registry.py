"""One backend registry per device kind: the daemon asks it for a backend by configuration.

The built-in backends register here, their drivers imported only when one is opened. A backend
from outside ``terminal/`` registers through the registry's entry point group in its package's
pyproject.toml — the simulator's virtual camera (``source = "sim:..."``) is one — so
``terminal/`` never imports it. An entry point is loaded only when its name is asked for.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from terminal.config import AudioSection, CameraSection, RelaySection, ScannerSection


class Registry:
    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group  # the entry point group other packages register backends under
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, factory: Callable[..., Any]) -> None:
        self._factories[name] = factory

    def get(self, name: str) -> Callable[..., Any] | None:
        """The factory registered as ``name``, here or by an entry point; None if nobody did."""
        factory = self._factories.get(name)
        if factory is None:
            for ep in entry_points(group=self.group, name=name):
                factory = self._factories[name] = ep.load()
                break
        return factory

    def open(self, name: str, *args, **kwargs):
        factory = self.get(name)
        if factory is None:
            raise ValueError(f"unknown {self.kind} {name!r}")
        return factory(*args, **kwargs)


# --- camera sources: factory(spec, *, width, height, fps) -> drivers.camera.FrameSource ---------
CAMERA_SOURCES = Registry("camera source", "gate_terminal.camera_sources")


def _device_source(spec: str, *, width: int, height: int, fps: float):
    from drivers.camera import open_source
    return open_source(spec, width=width, height=height, fps=fps)


CAMERA_SOURCES.register("device", _device_source)


def open_camera(cam: CameraSection):
    """A grabber on the source ``[camera] source`` names: ``scheme:options`` (or a bare scheme)
    for a registered source, anything else (a V4L2 device, image files, a video) for the device."""
    from drivers.camera import FrameGrabber
    spec = cam.source
    scheme = spec.partition(":")[0]
    name = scheme if scheme != "device" and CAMERA_SOURCES.get(scheme) else "device"
    return FrameGrabber(CAMERA_SOURCES.open(name, spec, width=cam.width, height=cam.height, fps=cam.fps))


# --- card readers: factory(port, *, baudrate) -> drivers.cards.CardReader ----------------------
CARD_READERS = Registry("card reader", "gate_terminal.card_readers")


def _id_card_reader(port: str, *, baudrate: int):
    from drivers.idcard.reader import IdCardReader
    return IdCardReader(port, baudrate=baudrate)


def _ss_card_reader(port: str, *, baudrate: int):
    from drivers.sscard.reader import SsCardReader
    return SsCardReader(port, baudrate=baudrate)


CARD_READERS.register("id_card", _id_card_reader)
CARD_READERS.register("ss_card", _ss_card_reader)


def open_reader(kind: str, port: str, baud: int):
    return CARD_READERS.open(kind, port, baudrate=baud)


# --- scan engines: factory(section) -> drivers.scanner.ScanEngine -----------------------------
SCANNERS = Registry("scan engine kind", "gate_terminal.scanners")


def _serial_scanner(section: ScannerSection):
    from drivers.scanner.reader import SerialScanner
    return SerialScanner(section.port, baudrate=section.baud, prefix=section.prefix or "",
                         suffix=section.suffix, gap=section.gap)


def _hid_scanner(section: ScannerSection):
    from drivers.scanner.hid import HidScanner
    return HidScanner(section.device, prefix=section.prefix or "", gap=section.gap)


SCANNERS.register("serial", _serial_scanner)
SCANNERS.register("hid", _hid_scanner)


def open_scanner(section: ScannerSection):
    """The scan engine ``[scanner]`` names; a serial one on a pseudo-terminal or ``socket://`` is
    the simulator's (``gate-terminal sim scanner``)."""
    return SCANNERS.open(section.kind, section)


# --- gate relays: factory(port) -> drivers.relay.RelayBackend ---------------------------------
RELAYS = Registry("relay kind", "gate_terminal.relays")


def _lcus_relay(port: str | None):
    from drivers.relay import open_relay
    return open_relay("lcus", port)


def _no_relay(port: str | None):
    from drivers.relay import NoRelay
    return NoRelay()


RELAYS.register("lcus", _lcus_relay)
RELAYS.register("none", _no_relay)


def open_relay(relay: RelaySection):
    return RELAYS.open(relay.kind, relay.port)


# --- audio sinks: factory(device) -> drivers.audio.AplaySink-like ----------------------------
# The simulator's WAV recorder registers as "wavfile" (sim/audio_sink.py, an entry point).
AUDIO_SINKS = Registry("audio sink", "gate_terminal.audio_sinks")


def _alsa_sink(device: str):
    from drivers.audio import AplaySink
    return AplaySink(device)


AUDIO_SINKS.register("alsa", _alsa_sink)


def open_audio_sink(audio: AudioSection):
    return AUDIO_SINKS.open(audio.kind, audio.device)
