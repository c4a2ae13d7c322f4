"""The version this process runs: what it reports, and what an update compares with."""
from __future__ import annotations

import sysconfig
from importlib import metadata

import terminal


def running_version() -> str:
    """The version installed in this interpreter's own environment (a release's venv: never a
    copy elsewhere on the path), else the source's."""
    for dist in metadata.distributions(name="gate-terminal", path=[sysconfig.get_paths()["purelib"]]):
        return dist.version
    return terminal.__version__
