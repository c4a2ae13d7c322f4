"""``gate-terminal release …``: release bundles and the update prefix (docs/protocol/updates.md).

    release build --out DIR [--version V]     a bundle from this checkout (on a build machine)
    release install --prefix P --bundle FILE  a terminal's first release, made current, and the launcher
    release install-boot --prefix P           (again) copy the launcher to P/bin/gate-terminal-boot
"""
from __future__ import annotations

from pathlib import Path

from terminal.commands.usage import UsageError

DEFAULT_PREFIX = Path("/opt/gate-terminal")
BOOT_PYTHON = "/usr/bin/python3"   # the system's: nothing a release ships runs the launcher


def register(sub) -> None:
    p = sub.add_parser("release", help="software releases: build a bundle, install into a prefix",
                       description="Build an offline-installable release bundle, or set up a terminal's "
                                   "release prefix (releases/<version>/, the current link, the launcher).")
    rsub = p.add_subparsers(dest="release_command", required=True, metavar="RELEASECOMMAND")
    b = rsub.add_parser("build", help="wheels of this checkout and its dependencies, as one bundle")
    b.add_argument("--out", required=True, type=Path, metavar="DIR")
    b.add_argument("--version", metavar="V", help="the release's version (default: the checkout's)")
    b.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[2], metavar="DIR",
                   help="the git checkout to build (default: the one this command runs from)")
    b.set_defaults(func=run_build)
    i = rsub.add_parser("install", help="install a bundle as the first release of a prefix")
    i.add_argument("--prefix", type=Path, default=DEFAULT_PREFIX)
    i.add_argument("--bundle", type=Path, required=True, metavar="FILE")
    i.add_argument("--python", default=BOOT_PYTHON, help=f"the launcher's interpreter (default {BOOT_PYTHON})")
    i.set_defaults(func=run_install)
    k = rsub.add_parser("install-boot", help="copy the launcher to PREFIX/bin/gate-terminal-boot")
    k.add_argument("--prefix", type=Path, default=DEFAULT_PREFIX)
    k.add_argument("--python", default=BOOT_PYTHON, help=f"the launcher's interpreter (default {BOOT_PYTHON})")
    k.set_defaults(func=run_install_boot)


def run_build(args) -> int:
    from terminal.update.bundle import BundleError, build
    try:
        path = build(args.checkout, args.out, args.version)
    except (BundleError, ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    print(f"release bundle {path} ({path.stat().st_size >> 20} MiB)")
    return 0


def install_boot(prefix: Path, python: str) -> Path:
    """The launcher, a copy of terminal/update/boot.py run by ``python``, at prefix/bin."""
    from terminal.update import boot
    dest = prefix / "bin" / "gate-terminal-boot"
    text = Path(boot.__file__).read_text()
    boot.write_atomic(dest, f"#!{python}\n{text}".encode())
    dest.chmod(0o755)
    return dest


def run_install(args) -> int:
    from terminal.update.bundle import BundleError, extract
    from terminal.update.install import InstallError, first_install
    import tempfile
    try:
        with tempfile.TemporaryDirectory() as tmp:
            version = extract(args.bundle, Path(tmp)).version
        first_install(args.bundle, args.prefix, version)
        launcher = install_boot(args.prefix, args.python)
    except (BundleError, InstallError, OSError) as e:
        raise UsageError(f"{args.bundle}: {e}") from None
    print(f"release {version} installed in {args.prefix} and current; launcher {launcher}")
    return 0


def run_install_boot(args) -> int:
    try:
        print(f"launcher {install_boot(args.prefix, args.python)}")
    except OSError as e:
        raise UsageError(str(e)) from None
    return 0
