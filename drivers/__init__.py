"""Hardware drivers: camera and QR decoding, ID-card and social-security-card readers, gate relay.

Each device kind has one small interface and backends chosen by configuration; serial devices
are opened by URL (a device path, a pseudo-terminal, or ``socket://host:port``) through
:mod:`drivers.serial_link`, so the drivers under test are the drivers that ship.
"""
