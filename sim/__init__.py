"""Simulated hardware: devices that speak the real bytes over a pseudo-terminal or a TCP port."""
