"""Running on the host: sd_notify and the watchdog, credentials, journald logs, metrics, and reading
the files the configuration names (regular files only, size-bounded)."""
