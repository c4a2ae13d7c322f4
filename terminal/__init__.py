"""gate-terminal: the software inside an entrance verification terminal."""
__version__ = "0.1.0"
