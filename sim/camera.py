"""Virtual camera: a phone showing a health code, seen the way a cheap UVC camera sees it.

Each *presentation* is one person holding a phone under the camera for ``show_frames``
frames, after ``gap_frames`` empty frames (nobody there). The phone is a rendered screen
(app header, a coloured QR code, text lines) placed in 3-D in front of a pinhole camera
(f = 600 px, about a 56° webcam), then everything a real picture suffers is applied:

    pose       distance (code width on the frame), tilt, roll, position
    hand       shake between frames (a smooth random walk) and the motion blur it causes
    optics     defocus blur
    screen     brightness (white level), code colour (health codes are green/yellow/red),
               moiré (the screen's pixel grid sampled by the sensor), glare (a reflection)
    sensor     noise, then MJPEG compression (what UVC cameras send at 30 fps)

Everything is drawn from ``numpy`` generators seeded by (seed, presentation, frame), so a
frame is a pure function of its index: the same seed gives the same pictures, in any order.
:class:`VirtualCamera` is a :class:`drivers.camera.FrameSource`, so the daemon grabs from it
exactly as from a camera; :func:`open_source` also takes ``sim:...`` specs besides what
:func:`drivers.camera.open_source` takes (device, image files, a video file).
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np
import qrcode

from drivers.camera import CameraError, EndOfStream, FrameSource
from drivers.camera import open_source as open_device_source

BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
FOCAL_PX = 600.0

# Screen colours of the code modules (BGR). Grey-level contrast on white: black 1.0,
# red 0.66, green 0.61, yellow (the apps' orange-yellow) only 0.31.
CODE_COLORS = {
    "black": (20, 20, 20),
    "green": (40, 150, 20),
    "yellow": (35, 166, 245),
    "red": (30, 30, 220),
}


def sample_text(rng: np.random.Generator, length: int = 203) -> str:
    """A health-code-shaped text: ``SDHC1:`` and Base45 characters (QR alphanumeric mode)."""
    idx = rng.integers(0, len(BASE45_ALPHABET), size=length)
    return "SDHC1:" + "".join(BASE45_ALPHABET[i] for i in idx)


@functools.lru_cache(maxsize=64)
def qr_modules(text: str) -> np.ndarray:
    """The QR symbol (ECC level M, smallest version that fits) as a bool array, True = dark.
    Cached: choosing the mask costs more than rendering a frame. Do not modify the result."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    qr.add_data(text)
    qr.make(fit=True)
    return np.array(qr.get_matrix(), dtype=bool)


@dataclass(frozen=True)
class Conditions:
    """How hard the camera has it; ranges are sampled uniformly per presentation."""
    code_px: tuple[float, float] = (190.0, 260.0)   # code width (no quiet zone) on the frame
    offset_px: float = 60.0        # code centre within this distance of the frame centre
    tilt_deg: float = 12.0         # max out-of-plane tilt, each axis
    roll_deg: float = 20.0         # max in-plane rotation
    defocus: tuple[float, float] = (0.0, 0.5)       # Gaussian sigma, frame px
    shake_px: float = 0.4          # hand speed, px per frame (std); motion blur follows it
    glare: tuple[float, float] = (0.0, 0.0)         # peak added light, fraction of full scale
    brightness: tuple[float, float] = (0.85, 1.0)   # screen white level
    moire: tuple[float, float] = (0.0, 0.0)         # contrast of the sampled pixel grid
    noise: float = 2.0             # sensor noise sigma, 8-bit levels
    jpeg_quality: int = 90         # MJPEG quality; 0 sends raw frames
    colors: tuple[tuple[str, float], ...] = (("green", 0.6), ("black", 0.2), ("red", 0.1),
                                             ("yellow", 0.1))


# The benchmark levels, clean → hard. "hard" is still something a camera at a door sees:
# a phone held far and crooked, slightly out of focus, moving, with a ceiling light on it.
LEVELS: dict[str, Conditions] = {
    "clean": Conditions(code_px=(220, 280), tilt_deg=5, roll_deg=10, defocus=(0.0, 0.3),
                        shake_px=0.2, noise=1.5, jpeg_quality=95),
    "mild": Conditions(code_px=(170, 240), tilt_deg=15, roll_deg=30, defocus=(0.3, 0.8),
                       shake_px=1.0, brightness=(0.7, 1.0), moire=(0.0, 0.15), noise=3.0,
                       jpeg_quality=85),
    "moderate": Conditions(code_px=(130, 190), offset_px=120, tilt_deg=25, roll_deg=45,
                           defocus=(0.6, 1.1), shake_px=2.0, glare=(0.0, 0.35),
                           brightness=(0.55, 1.0), moire=(0.05, 0.25), noise=5.0,
                           jpeg_quality=75),
    "hard": Conditions(code_px=(125, 180), offset_px=150, tilt_deg=35, roll_deg=90,
                       defocus=(0.6, 1.1), shake_px=3.0, glare=(0.2, 0.6),
                       brightness=(0.4, 0.9), moire=(0.1, 0.35), noise=8.0, jpeg_quality=65),
}


@dataclass(frozen=True)
class Pose:
    cx: float          # code centre on the frame, px
    cy: float
    code_px: float     # code width on the frame when facing the camera
    tilt_x: float      # degrees
    tilt_y: float
    roll: float


class PhoneScreen:
    """The phone as a flat BGR texture: bezel, app header, coloured code, text lines.

    Drawn at about 1.5 texture px per frame px, pre-blurred against aliasing; the screen's
    pixel grid (for moiré) is kept separately, unblurred, so that warping samples it."""

    def __init__(self, modules: np.ndarray, code_px: float, color: tuple[int, int, int],
                 brightness: float, rng: np.random.Generator):
        n = modules.shape[0]
        m = max(2, math.ceil(code_px / n * 1.5))   # texture px per module
        code = n * m
        quiet = 4 * m
        sw = code + 2 * quiet + 2 * m                # screen width
        sh = int(sw * 2.0)
        bezel = max(4, sw // 25)
        white = 255.0 * brightness
        screen = np.full((sh, sw, 3), white, np.float32)
        header = int(sh * 0.12)
        screen[:header] = np.array((90, 160, 30), np.float32) * brightness   # app title bar
        x0 = (sw - code) // 2
        y0 = header + (sh - header - code) // 3
        dark = np.repeat(np.repeat(modules, m, 0), m, 1)
        screen[y0:y0 + code, x0:x0 + code][dark] = np.array(color, np.float32) * brightness
        line_h = max(3, m)
        for i in range(6):                           # masked name, time, place lines
            y = y0 + code + quiet + i * 3 * line_h
            if y + line_h >= sh:
                break
            w = int(sw * rng.uniform(0.3, 0.8))
            screen[y:y + line_h, (sw - w) // 2:(sw + w) // 2] = 90 * brightness
        phone = np.full((sh + 2 * bezel * 3, sw + 2 * bezel, 3), 18, np.float32)
        phone[bezel * 3:bezel * 3 + sh, bezel:bezel + sw] = screen
        scale = m / (code_px / n)                    # texture px per frame px
        self.texture = cv2.GaussianBlur(phone, (0, 0), 0.45 * scale)
        self.screen_box = (bezel, bezel * 3, bezel + sw, bezel * 3 + sh)   # x0, y0, x1, y1
        self.code_center = (bezel + x0 + code / 2, bezel * 3 + y0 + code / 2)
        self.code_width = float(code)
        # Screen subpixel grid, period 3 texture px: under the sensor's sampling it beats
        # into the slow bands a camera shows as moiré.
        ph, pw = phone.shape[:2]
        self.grid = ((np.arange(pw) % 3 == 0)[None, :] | (np.arange(ph) % 3 == 0)[:, None]).astype(np.float32)


def homography(screen: PhoneScreen, pose: Pose, size: tuple[int, int]) -> np.ndarray:
    """Texture → frame: the phone plane rotated and placed so the code has ``pose.code_px``."""
    h, w = screen.texture.shape[:2]
    ucx, ucy = screen.code_center
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    plane = np.c_[corners - (ucx, ucy), np.zeros(4)]
    ax, ay, az = (math.radians(a) for a in (pose.tilt_x, pose.tilt_y, pose.roll))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    z = FOCAL_PX * screen.code_width / pose.code_px
    fw, fh = size
    t = np.array([(pose.cx - fw / 2) * z / FOCAL_PX, (pose.cy - fh / 2) * z / FOCAL_PX, z])
    pts = plane @ (rx @ ry @ rz).T + t
    proj = FOCAL_PX * pts[:, :2] / pts[:, 2:3] + (fw / 2, fh / 2)
    return cv2.getPerspectiveTransform(corners.astype(np.float32), proj.astype(np.float32))


def make_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """What the camera sees with nobody there: a dim, uneven counter with an edge or two."""
    w, h = size
    grey = rng.uniform(40, 130, size=(6, 8, 1))
    small = (grey + rng.uniform(-12, 12, size=(6, 8, 3))).astype(np.float32)
    bg = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(2):
        p1 = (int(rng.integers(0, w)), 0)
        p2 = (int(rng.integers(0, w)), h)
        cv2.line(bg, p1, p2, tuple(float(v) for v in rng.uniform(20, 160, 3)), int(rng.integers(2, 8)))
    return np.clip(bg, 0, 255)


def _motion_kernel(dx: float, dy: float) -> np.ndarray | None:
    length = math.hypot(dx, dy)
    if length < 1.0:
        return None
    k = int(math.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    cv2.line(kernel, (round(c - dx / 2), round(c - dy / 2)), (round(c + dx / 2), round(c + dy / 2)), 1.0)
    return kernel / kernel.sum()


def render(background: np.ndarray, screen: PhoneScreen | None, pose: Pose | None,
           velocity: tuple[float, float], glare: tuple[float, float, float, float],
           moire: float, cond: Conditions, defocus: float,
           rng: np.random.Generator) -> np.ndarray:
    """One 8-bit BGR frame. ``glare`` is (peak, x, y, radius) in frame px; ``velocity`` is
    the hand's motion during this frame, px per frame (the shutter is open half of it)."""
    fh, fw = background.shape[:2]
    frame = background.copy()
    if screen is not None and pose is not None:
        H = homography(screen, pose, (fw, fh))
        cv2.warpPerspective(screen.texture, H, (fw, fh), dst=frame, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_TRANSPARENT)
        if moire > 0:
            grid = cv2.warpPerspective(screen.grid, H, (fw, fh), flags=cv2.INTER_LINEAR)
            sx0, sy0, sx1, sy1 = screen.screen_box
            box = np.zeros(screen.grid.shape, np.float32)
            box[sy0:sy1, sx0:sx1] = 1
            mask = cv2.warpPerspective(box, H, (fw, fh), flags=cv2.INTER_NEAREST)
            frame *= (1.0 - moire * mask * (grid - 0.55))[..., None]
        peak, gx, gy, radius = glare
        # A ceiling light's reflection: an elongated blob along the code's x axis, computed only
        # where it adds anything (beyond 3 of its radii it adds < 0.02 grey levels).
        x0, x1 = max(0, int(gx - 6 * radius)), min(fw, int(gx + 6 * radius) + 1)
        y0, y1 = max(0, int(gy - 3 * radius)), min(fh, int(gy + 3 * radius) + 1)
        if peak > 0 and x0 < x1 and y0 < y1:
            yy, xx = np.ogrid[y0:y1, x0:x1]
            blob = np.exp(-(((xx - gx) / (2.0 * radius)) ** 2 + ((yy - gy) / radius) ** 2))
            frame[y0:y1, x0:x1] += (peak * 255.0 * blob.astype(np.float32))[..., None]
        kernel = _motion_kernel(velocity[0] * 0.5, velocity[1] * 0.5)
        if kernel is not None:
            frame = cv2.filter2D(frame, -1, kernel)
    if defocus > 0.05:
        frame = cv2.GaussianBlur(frame, (0, 0), defocus)
    if cond.noise > 0:
        frame += rng.standard_normal((fh, fw), dtype=np.float32)[..., None] * cond.noise
    out = np.clip(frame, 0, 255).astype(np.uint8)
    if cond.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, cond.jpeg_quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


class Presentation:
    """One person showing one code: a pose, a hand-shake path and per-frame light."""

    def __init__(self, text: str, cond: Conditions, frames: int, rng: np.random.Generator,
                 size: tuple[int, int]):
        self.text = text
        self.cond = cond
        fw, fh = size
        names = [c for c, _ in cond.colors]
        weights = np.array([p for _, p in cond.colors], float)
        color = CODE_COLORS[names[int(rng.choice(len(names), p=weights / weights.sum()))]]
        code_px = rng.uniform(*cond.code_px)
        self.screen = PhoneScreen(qr_modules(text), code_px, color, rng.uniform(*cond.brightness), rng)
        ang = rng.uniform(0, 2 * math.pi)
        r = cond.offset_px * math.sqrt(rng.uniform())
        self.base = Pose(fw / 2 + r * math.cos(ang), fh / 2 + r * math.sin(ang), code_px,
                         rng.uniform(-cond.tilt_deg, cond.tilt_deg),
                         rng.uniform(-cond.tilt_deg, cond.tilt_deg),
                         rng.uniform(-cond.roll_deg, cond.roll_deg))
        # Hand shake: velocity is a damped random walk, position its sum.
        vel = np.zeros((frames, 2))
        v = rng.normal(0, cond.shake_px, 2)
        for i in range(frames):
            v = 0.7 * v + rng.normal(0, cond.shake_px * 0.7, 2)
            vel[i] = v
        self.velocity = vel
        self.offset = np.cumsum(vel, axis=0)
        self.roll_jitter = np.cumsum(rng.normal(0, cond.shake_px * 0.1, frames))
        self.defocus = rng.uniform(*cond.defocus)
        self.moire = rng.uniform(*cond.moire)
        peak = rng.uniform(*cond.glare)
        self.glare = (peak, self.base.cx + rng.uniform(-0.4, 0.4) * code_px,
                      self.base.cy + rng.uniform(-0.4, 0.4) * code_px, code_px * rng.uniform(0.1, 0.3))

    def pose(self, i: int) -> Pose:
        dx, dy = self.offset[i]
        return replace(self.base, cx=self.base.cx + dx, cy=self.base.cy + dy,
                       roll=self.base.roll + self.roll_jitter[i])


def degraded_frame(text: str, cond: Conditions, seed: int | Sequence[int],
                   size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """One independent frame of ``text`` under ``cond`` (the benchmark's and tests' sample)."""
    rng = np.random.default_rng(seed)
    background = make_background(rng, size)
    p = Presentation(text, cond, 1, rng, size)
    return render(background, p.screen, p.pose(0), tuple(p.velocity[0]), p.glare, p.moire, cond,
                  p.defocus, rng)


class VirtualCamera(FrameSource):
    """A camera watching people show codes: ``gap_frames`` empty frames, then a phone showing
    the next text for ``show_frames`` frames, and so on. ``texts`` are shown in order (cycled
    if ``loop``); ``None`` makes up a new random health-code text per presentation.

    With ``realtime`` the reads are paced at ``fps``; without, frames come as fast as they
    render (tests, benchmarks)."""

    def __init__(self, texts: Sequence[str] | None = None, *, conditions: Conditions = LEVELS["mild"],
                 show_frames: int = 45, gap_frames: int = 30, seed: int = 0, fps: float = 30.0,
                 realtime: bool = True, loop: bool = True, size: tuple[int, int] = (640, 480)):
        if show_frames < 1 or gap_frames < 0:
            raise ValueError("show_frames must be ≥ 1 and gap_frames ≥ 0")
        self.name = f"sim:seed={seed}"
        self.texts = list(texts) if texts is not None else None
        self.cond = conditions
        self.show_frames = show_frames
        self.gap_frames = gap_frames
        self.seed = seed
        self.fps = fps
        self.realtime = realtime
        self.loop = loop
        self.size = size
        self._background = make_background(np.random.default_rng([seed, 0xB6]), size)
        self._cache: tuple[int, Presentation] | None = None
        self._next = 0
        self._t0 = 0.0

    @property
    def period(self) -> int:
        return self.gap_frames + self.show_frames

    def text_at(self, index: int) -> str | None:
        """The text on the phone in frame ``index`` (None: no phone), or raise IndexError past
        the end of a non-looping script."""
        p, k = divmod(index, self.period)
        if self.texts is not None and not self.loop and p >= len(self.texts):
            raise IndexError(index)
        if k < self.gap_frames:
            return None
        if self.texts is None:
            return sample_text(np.random.default_rng([self.seed, p, 0x7E]))
        return self.texts[p % len(self.texts)] if self.texts else None

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` of the script (a pure function of seed and index)."""
        text = self.text_at(index)
        p, k = divmod(index, self.period)
        rng = np.random.default_rng([self.seed, p, k])
        if text is None:
            return render(self._background, None, None, (0, 0), (0, 0, 0, 0), 0, self.cond, 0, rng)
        if self._cache is None or self._cache[0] != p:
            self._cache = (p, Presentation(text, self.cond, self.show_frames,
                                           np.random.default_rng([self.seed, p]), self.size))
        pres = self._cache[1]
        i = k - self.gap_frames
        return render(self._background, pres.screen, pres.pose(i), tuple(pres.velocity[i]),
                      pres.glare, pres.moire, self.cond, pres.defocus, rng)

    # FrameSource
    def open(self) -> None:
        self._t0 = time.monotonic() - self._next / self.fps

    def read(self) -> np.ndarray:
        try:
            img = self.frame(self._next)
        except IndexError:
            raise EndOfStream(f"{self.name}: script finished") from None
        if self.realtime:
            delay = self._t0 + self._next / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._next += 1
        return img

    def close(self) -> None:
        pass


def camera_source(spec: str, *, width: int, height: int, fps: float) -> FrameSource:
    """The ``gate_terminal.camera_sources`` entry point (pyproject.toml) for ``sim`` and
    ``sim:...``: the virtual camera draws its own frame size, its rate is the spec's ``fps=``."""
    return open_source(spec)


def open_source(spec: str) -> FrameSource:
    """``sim`` or ``sim:seed=3,level=hard,show=45,gap=30`` for a virtual camera; anything else
    (a device, image files, a video file) goes to :func:`drivers.camera.open_source`."""
    if spec != "sim" and not spec.startswith("sim:"):
        return open_device_source(spec)
    opts: dict[str, str] = {}
    for item in filter(None, spec[4:].split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise CameraError(f"{spec}: expected key=value, got {item!r}")
        opts[key.strip()] = value.strip()
    unknown = set(opts) - {"seed", "level", "show", "gap", "fps"}
    if unknown:
        raise CameraError(f"{spec}: unknown option(s) {', '.join(sorted(unknown))}")
    level = opts.get("level", "mild")
    if level not in LEVELS:
        raise CameraError(f"{spec}: level must be one of {', '.join(LEVELS)}")
    try:
        return VirtualCamera(conditions=LEVELS[level], seed=int(opts.get("seed", 0)),
                             show_frames=int(opts.get("show", 45)), gap_frames=int(opts.get("gap", 30)),
                             fps=float(opts.get("fps", 30)))
    except ValueError as e:
        raise CameraError(f"{spec}: {e}") from None
