"""2D scan engine (devices.md §6): lines (:mod:`.framing`) -> codes and presentations
(:mod:`.protocol`) -> the engine the daemon polls (:mod:`.reader`: serial; :mod:`.hid`: USB
keyboard mode, whose key presses :mod:`.keymap` turns into lines)."""
from drivers.scanner.reader import ScanEngine, ScanRead, SerialScanner

__all__ = ["ScanEngine", "ScanRead", "SerialScanner"]
