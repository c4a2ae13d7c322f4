"""What the terminal keeps: the SQLite store, retention, the disk reserve, the card status
cache, the clock guard's floor and the daemon's status file."""
