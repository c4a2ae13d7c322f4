"""Fetching a release through TUF (python-tuf's ngclient) from the hub's repository over HTTPS.

The trust anchor is the repository's root metadata the terminal was provisioned with
(``[update] root``); ngclient walks root rotations from it, and keeps what it has verified in
``<state_dir>/tuf/metadata`` — which is what refuses a rollback (a timestamp, snapshot or
targets older than one already seen), a freeze (expired metadata) and mix-and-match (a
snapshot naming other targets metadata than the one served, a target whose hash or length is
not the signed one). Keys are SM2/SM3 (terminal/update/sm2key.py, registered on import here).
"""
from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

import terminal
from terminal.update import sm2key  # noqa: F401  (registers the SM2 key type before any parsing)
from terminal.update.bundle import target_name
from terminal.hub.wire import version_key

log = logging.getLogger(__name__)
TIMEOUT = 30.0


class Refused(Exception):
    """The repository's metadata or the release does not verify: reported as ``refused``."""


class Unreachable(Exception):
    """No answer from the repository: nothing is decided, the terminal tries again later."""


class _HTTPS(FetcherInterface):
    """Downloads over HTTPS checked against one CA (the hub's), never the system's store."""

    def __init__(self, ca: Path | None):
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        self._pool = urllib3.PoolManager(ssl_context=ctx, retries=False,
                                         headers={"User-Agent": f"gate-terminal/{terminal.__version__}"})

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self._pool.request("GET", url, preload_content=False, timeout=urllib3.Timeout(TIMEOUT))
        except urllib3.exceptions.HTTPError as e:
            raise tuf_errors.DownloadError(f"{url}: {e}") from None
        if response.status >= 400:
            response.close()
            raise tuf_errors.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        return self._chunks(response)

    @staticmethod
    def _chunks(response) -> Iterator[bytes]:
        try:
            yield from response.stream(1 << 16)
        except urllib3.exceptions.HTTPError as e:
            raise tuf_errors.DownloadError(str(e)) from None
        finally:
            response.release_conn()


class ReleaseFetcher:
    def __init__(self, url: str, root: Path, work_dir: Path, ca: Path | None):
        self.url = url.rstrip("/")
        self.root = root
        self.metadata_dir = work_dir / "metadata"
        self.download_dir = work_dir / "downloads"
        self.ca = ca

    def _updater(self) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.download_dir.mkdir(parents=True, exist_ok=True)
        cached = self.metadata_dir / "root.json"  # the newest root verified so far
        try:
            bootstrap = (cached if cached.exists() else self.root).read_bytes()
        except OSError as e:
            raise Refused(f"no trusted TUF root: {e}") from None
        try:
            return Updater(str(self.metadata_dir), f"{self.url}/metadata/", str(self.download_dir),
                           f"{self.url}/targets/", fetcher=_HTTPS(self.ca),
                           config=UpdaterConfig(app_user_agent=f"gate-terminal/{terminal.__version__}"),
                           bootstrap=bootstrap)
        except tuf_errors.RepositoryError as e:
            raise Refused(f"trusted root does not load: {e}") from None

    def versions(self) -> list[str]:
        """The release versions the verified targets metadata names, oldest first."""
        self._refresh(self._updater())
        try:  # what refresh() verified and kept
            targets = Metadata[Targets].from_file(str(self.metadata_dir / "targets.json")).signed
        except (OSError, ValueError) as e:
            raise Refused(f"no verified targets metadata: {e}") from None
        found = []
        for name, t in targets.targets.items():
            v = (t.unrecognized_fields.get("custom") or {}).get("version")
            try:
                if name == target_name(v):
                    found.append(v)
            except ValueError:
                continue
        return sorted(found, key=version_key)

    def fetch(self, version: str) -> Path:
        """The verified bundle of ``version``; Refused or Unreachable otherwise."""
        up = self._updater()
        self._refresh(up)
        name = target_name(version)
        try:
            info = up.get_targetinfo(name)
            if info is None:
                raise Refused(f"the repository's signed targets hold no {name}")
            if (info.unrecognized_fields.get("custom") or {}).get("version") != version:
                raise Refused(f"target {name} is not signed as version {version}")
            path = up.find_cached_target(info) or up.download_target(info)
        except tuf_errors.RepositoryError as e:
            raise Refused(f"{name}: {type(e).__name__}: {e}") from None
        except (tuf_errors.DownloadError, OSError) as e:
            raise Unreachable(f"{name}: {e}") from None
        return Path(path)

    @staticmethod
    def _refresh(up: Updater) -> None:
        try:
            up.refresh()
        except tuf_errors.RepositoryError as e:
            raise Refused(f"metadata does not verify: {type(e).__name__}: {e}") from None
        except (tuf_errors.DownloadError, OSError) as e:
            raise Unreachable(f"repository: {e}") from None
