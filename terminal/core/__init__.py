"""The decision core: tokens, reasons, venue policies, trust lists, what counts as a presentation.

Pure: no I/O, no store, no config files, no threads. Imports only terminal.crypto and
drivers.idnumber (tests/test_layers.py holds it to that).
"""
