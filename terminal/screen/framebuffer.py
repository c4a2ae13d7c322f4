"""A Linux framebuffer (/dev/fbN) as the kiosk screen.

The device says its own geometry and pixel format (FBIOGET_VSCREENINFO / FBIOGET_FSCREENINFO);
the image is converted to that format channel by channel from the bitfield offsets/lengths, so
XRGB, BGRX, RGBX, ARGB... at 32 bpp, 24 bpp and RGB565 all go through the same code. Pixel values
are stored in the CPU's byte order, as the kernel's own fbcon does.
"""
from __future__ import annotations

import fcntl
import logging
import os
import struct
import sys
from dataclasses import dataclass

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

FBIOGET_VSCREENINFO = 0x4600
FBIOGET_FSCREENINFO = 0x4602
FB_VISUAL_TRUECOLOR = 2

# struct fb_var_screeninfo (linux/fb.h): forty __u32, 160 bytes.
#   [0] xres  [1] yres  [2] xres_virtual  [3] yres_virtual  [4] xoffset  [5] yoffset
#   [6] bits_per_pixel  [7] grayscale
#   [8..10] red {offset, length, msb_right}  [11..13] green  [14..16] blue  [17..19] transp
#   [20] nonstd  [21] activate  [22] height mm  [23] width mm  [24] accel_flags
#   [25..35] pixclock, margins, sync lengths, sync, vmode, rotate, colorspace  [36..39] reserved
VAR_FORMAT = "=40I"
VAR_SIZE = struct.calcsize(VAR_FORMAT)

# struct fb_fix_screeninfo, native alignment ("unsigned long" is the CPU word):
#   char id[16]; unsigned long smem_start; __u32 smem_len, type, type_aux, visual;
#   __u16 xpanstep, ypanstep, ywrapstep; __u32 line_length; unsigned long mmio_start;
#   __u32 mmio_len, accel; __u16 capabilities, reserved[2];
# The trailing "0L" pads to the struct's alignment, as sizeof() does (80 bytes on 64-bit).
FIX_FORMAT = "@16sL4I3HIL2I3H0L"
FIX_SIZE = struct.calcsize(FIX_FORMAT)


class FramebufferError(RuntimeError):
    pass


@dataclass(frozen=True)
class Bitfield:
    offset: int
    length: int


@dataclass(frozen=True)
class FbGeometry:
    xres: int
    yres: int
    bits_per_pixel: int
    red: Bitfield
    green: Bitfield
    blue: Bitfield
    transp: Bitfield
    line_length: int                 # bytes from one row to the next (>= xres * bytes per pixel)
    xoffset: int = 0                 # the visible area inside the virtual one (panning)
    yoffset: int = 0
    visual: int = FB_VISUAL_TRUECOLOR
    id: str = ""

    @property
    def bytes_per_pixel(self) -> int:
        return self.bits_per_pixel // 8

    def check(self) -> None:
        """FramebufferError unless this is a packed true-colour format we can write."""
        what = f"framebuffer {self.id or '?'} ({self.bits_per_pixel} bpp)"
        if self.visual != FB_VISUAL_TRUECOLOR:
            raise FramebufferError(f"{what}: visual {self.visual} is not true colour")
        if self.bits_per_pixel not in (16, 24, 32):
            raise FramebufferError(f"{what}: only 16, 24 and 32 bits per pixel are supported")
        if self.xres <= 0 or self.yres <= 0:
            raise FramebufferError(f"{what}: no resolution ({self.xres}x{self.yres})")
        if self.line_length < self.xres * self.bytes_per_pixel:
            raise FramebufferError(f"{what}: line length {self.line_length} shorter than a row")
        for name in ("red", "green", "blue", "transp"):
            bf: Bitfield = getattr(self, name)
            if bf.length > 16 or bf.offset + bf.length > self.bits_per_pixel:
                raise FramebufferError(f"{what}: {name} bitfield {bf} outside the pixel")
        if not (self.red.length and self.green.length and self.blue.length):
            raise FramebufferError(f"{what}: a colour channel has no bits")

    @classmethod
    def from_ioctl(cls, var: bytes, fix: bytes) -> "FbGeometry":
        """Parse the two structs as FBIOGET_VSCREENINFO / FBIOGET_FSCREENINFO return them."""
        if len(var) < VAR_SIZE or len(fix) < FIX_SIZE:
            raise FramebufferError("short framebuffer info")
        v = struct.unpack_from(VAR_FORMAT, var)
        f = struct.unpack_from(FIX_FORMAT, fix)
        fid, visual, line_length = f[0], f[5], f[9]
        return cls(xres=v[0], yres=v[1], xoffset=v[4], yoffset=v[5], bits_per_pixel=v[6],
                   red=Bitfield(v[8], v[9]), green=Bitfield(v[11], v[12]),
                   blue=Bitfield(v[14], v[15]), transp=Bitfield(v[17], v[18]),
                   line_length=line_length, visual=visual,
                   id=fid.split(b"\0", 1)[0].decode("ascii", "replace"))

    @classmethod
    def for_format(cls, fmt: str, xres: int, yres: int, line_length: int | None = None
                   ) -> "FbGeometry":
        """A geometry for one of FORMATS (named by byte order in memory), e.g. for tests."""
        bpp, r, g, b, t = FORMATS[fmt]
        return cls(xres=xres, yres=yres, bits_per_pixel=bpp, red=Bitfield(*r), green=Bitfield(*g),
                   blue=Bitfield(*b), transp=Bitfield(*t),
                   line_length=line_length or xres * bpp // 8, id=fmt)


# name (bytes in memory on a little-endian CPU): bpp, then (offset, length) of red, green, blue, transp
FORMATS = {
    "BGRX": (32, (16, 8), (8, 8), (0, 8), (0, 0)),    # the usual fbdev "XRGB8888"
    "BGRA": (32, (16, 8), (8, 8), (0, 8), (24, 8)),
    "RGBX": (32, (0, 8), (8, 8), (16, 8), (0, 0)),
    "XRGB": (32, (8, 8), (16, 8), (24, 8), (0, 0)),
    "BGR": (24, (16, 8), (8, 8), (0, 8), (0, 0)),
    "RGB": (24, (0, 8), (8, 8), (16, 8), (0, 0)),
    "RGB565": (16, (11, 5), (5, 6), (0, 5), (0, 0)),
}


def _channel(c: np.ndarray, bf: Bitfield) -> np.ndarray:
    if bf.length <= 8:
        return (c >> (8 - bf.length)) << bf.offset
    return (c << (bf.length - 8)) << bf.offset


def pack_pixels(image: Image.Image, geom: FbGeometry) -> np.ndarray:
    """The image as framebuffer rows: uint8 array (yres, xres * bytes per pixel)."""
    if image.size != (geom.xres, geom.yres):
        image = image.resize((geom.xres, geom.yres))
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint32)
    v = _channel(rgb[..., 0], geom.red) | _channel(rgb[..., 1], geom.green) \
        | _channel(rgb[..., 2], geom.blue)
    if geom.transp.length:  # an alpha channel: opaque
        v |= ((1 << geom.transp.length) - 1) << geom.transp.offset
    bpp = geom.bytes_per_pixel
    raw = v.astype("=u4").view(np.uint8).reshape(geom.yres, geom.xres, 4)
    # The value's low-order bytes, wherever the CPU keeps them.
    raw = raw[..., :bpp] if sys.byteorder == "little" else raw[..., 4 - bpp:]
    return np.ascontiguousarray(raw).reshape(geom.yres, geom.xres * bpp)


def read_geometry(fd: int) -> FbGeometry:
    try:
        var = fcntl.ioctl(fd, FBIOGET_VSCREENINFO, bytes(VAR_SIZE))
        fix = fcntl.ioctl(fd, FBIOGET_FSCREENINFO, bytes(FIX_SIZE))
    except OSError as e:
        raise FramebufferError(f"not a framebuffer device: {e.strerror}") from None
    return FbGeometry.from_ioctl(var, fix)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        if n <= 0:
            raise OSError(f"short write at offset {offset}")
        data, offset = data[n:], offset + n


class FramebufferScreen:
    """Shows images on a framebuffer at its own resolution (``size``).

    ``geometry`` overrides what the device reports: tests use it with a plain file as ``path``.
    A write that fails (device gone) is logged, kept in ``error`` (None once an image got out)
    and the device reopened on the next show.
    """

    def __init__(self, path: str = "/dev/fb0", geometry: FbGeometry | None = None) -> None:
        self.path = path
        self._fd: int | None = self._open()
        try:
            self.geometry = geometry or read_geometry(self._fd)
            self.geometry.check()
        except FramebufferError as e:
            self.close()
            raise FramebufferError(f"{path}: {e}") from None
        self.size = (self.geometry.xres, self.geometry.yres)
        self.error: str | None = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise FramebufferError(f"cannot open {self.path}: {e.strerror}") from None

    def show(self, image: Image.Image) -> None:
        g = self.geometry
        rows = pack_pixels(image, g)
        start = g.yoffset * g.line_length + g.xoffset * g.bytes_per_pixel
        try:
            if self._fd is None:
                self._fd = self._open()
            if g.line_length == rows.shape[1]:  # no padding: one write
                _pwrite_all(self._fd, memoryview(rows).cast("B"), start)
            else:
                for y in range(g.yres):
                    _pwrite_all(self._fd, memoryview(rows[y]), start + y * g.line_length)
        except (OSError, FramebufferError) as e:
            if self.error is None:
                log.warning("screen %s: %s; retrying on the next image", self.path, e)
            self.error = f"{self.path}: {e}"
            self.close()
            return
        if self.error is not None:
            log.info("screen %s is back", self.path)
        self.error = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
