"""The daemon's inputs: each device kind's loop on its own thread, handing presentations to the
decide thread, and the registry that opens a backend for each device kind from the config."""
