"""The kiosk screen: what a person at the gate sees.

:class:`Renderer` turns a :class:`Panel` (or the idle state) into a Pillow image at the panel's
resolution; a backend from :func:`open_screen` shows it (PNG files, a Linux framebuffer, nothing).
:class:`terminal.screen.loop.ScreenLoop` is the screen's own thread in the daemon.
"""
from terminal.screen.backends import NullScreen, PngScreen, Screen, open_screen
from terminal.screen.fonts import FontError
from terminal.screen.framebuffer import FramebufferError, FramebufferScreen
from terminal.screen.render import Layout, Panel, Renderer

__all__ = ["FontError", "FramebufferError", "FramebufferScreen", "Layout", "NullScreen", "Panel",
           "PngScreen", "Renderer", "Screen", "open_screen"]
