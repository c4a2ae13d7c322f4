"""Finding a CJK font, and keeping loaded sizes around.

The screen must never show tofu boxes: a font is accepted only if distinct Chinese characters
render as distinct, non-empty glyphs (a Latin-only font draws them all as the same .notdef box).
"""
from __future__ import annotations

import functools
import logging
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

KNOWN_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",       # fonts-wqy-microhei (scripts/setup)
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
)
_PROBE = "通禁核验"
_NOTDEF = "\U0010FFFD"  # private use, end of plane 16: no font maps it


class FontError(RuntimeError):
    pass


@functools.lru_cache(maxsize=256)
def font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(1, int(size)))


def _bitmap(f: ImageFont.FreeTypeFont, ch: str) -> bytes:
    im = Image.new("L", (f.size + 8, f.size + 8))
    ImageDraw.Draw(im).text((4, 4), ch, font=f, fill=255)
    return im.tobytes() if im.getbbox() else b""


def missing_glyphs(f: ImageFont.FreeTypeFont, text: str) -> str:
    """The characters of ``text`` that ``f`` would draw as its .notdef box (tofu)."""
    notdef = _bitmap(f, _NOTDEF)
    return "".join(sorted({c for c in text if not c.isspace() and _bitmap(f, c) == notdef}))


def covers_cjk(path: str) -> bool:
    """True if distinct Chinese characters come out as distinct, non-empty, non-tofu glyphs."""
    try:
        f = font(path, 24)
    except OSError:
        return False
    glyphs = {_bitmap(f, ch) for ch in _PROBE}
    return b"" not in glyphs and len(glyphs) == len(_PROBE) and not missing_glyphs(f, _PROBE)


def _fc_match() -> str | None:
    try:
        out = subprocess.run(["fc-match", "-f", "%{file}", "sans:lang=zh-cn"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def find_cjk_font(preferred: str | None = None) -> str:
    """The path of a font that draws Chinese; FontError naming the fix if there is none."""
    candidates = ([preferred] if preferred else []) + [p for p in KNOWN_FONTS if Path(p).is_file()]
    for path in candidates:
        if covers_cjk(path):
            return path
        if path == preferred:
            log.warning("font %s cannot draw Chinese; looking for another", path)
    matched = _fc_match()
    if matched and covers_cjk(matched):
        return matched
    raise FontError("no font that can draw Chinese was found: install fonts-wqy-microhei "
                    "(scripts/setup does) or name a CJK font file")
