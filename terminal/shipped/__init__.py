"""Files ``gate-terminal install`` puts in place, read with :mod:`importlib.resources`.

The originals stay where the product's layout puts them (``systemd/`` and ``config.example.toml``
at the repository root); the entries here are relative symlinks to them. A wheel and an sdist
carry the files' content (setuptools copies through the links), an editable install reads the
originals through the links: one copy in the repository, the same bytes in every install.
(A ``package-dir`` mapping of the root folders does not survive setuptools' editable install:
a data-only package mapped there is a namespace package, which its editable finder cannot import.)
"""
