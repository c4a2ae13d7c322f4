"""Running under systemd: sd_notify and the watchdog, credentials, journald logs, metrics."""
