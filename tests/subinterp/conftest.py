"""Pythons for the subinterpreters backend, and the real-wheels corpus venv for 3.13."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from interpkit.core.errors import RuntimeUnavailable

# Small, popular wheels with compiled extensions for cp313 manylinux x86_64, pinned. Chosen to
# cover the binding generators in the wild: plain C (markupsafe, ujson, simplejson, msgpack,
# regex, bitarray, zstandard, wrapt, psutil abi3), Cython (pyyaml, frozenlist, multidict's C),
# mypyc (charset-normalizer), PyO3 (orjson, pydantic-core), cffi's backend, numpy, and
# the few that already declare own-GIL support.
CORPUS_PINS = (
    "markupsafe==3.0.2",
    "pyyaml==6.0.2",
    "msgpack==1.1.0",
    "ujson==5.10.0",
    "regex==2024.11.6",
    "simplejson==3.19.3",
    "bitarray==3.0.0",
    "zstandard==0.23.0",
    "charset-normalizer==3.4.0",
    "orjson==3.10.12",
    "pydantic-core==2.27.1",
    "numpy==2.1.3",
    "cffi==1.17.1",
    "psutil==6.1.0",
    "multidict==6.1.0",
    "frozenlist==1.5.0",
    "wrapt==1.17.0",
    # These declare own-GIL support (Py_mod_multiple_interpreters), or fail in other ways.
    "brotli==1.2.1",
    "crc32c==2.9.post0",
    "pybase64==1.5.1",
    "setproctitle==1.3.8",
    "xxhash==4.1.0",
    "time-machine==3.6.0",
    "cbor2==6.3.0",
    "immutables==0.21",
    "lz4==4.4.5",
    "mmh3==5.3.1",
    "google-crc32c==1.9.0",
    "isal==1.9.1",
    "zlib-ng==1.1.0",
)
CORPUS_ROOT = Path(os.environ.get("INTERPKIT_CORPUS_CACHE", Path.home() / ".cache" / "interpkit-corpus"))


# CPython 3.13.0's _datetime crashes when two isolated interpreters that imported it are
# destroyed (measured on the pyenv build; a later 3.13 may not): the tests of crash blaming
# rely on it, and say so by version instead of skipping when no crash was seen.
DATETIME_TEARDOWN_CRASH = (3, 13, 0)


def _python_or_skip(version: str):
    from interpkit.native.pythons import find_python

    try:
        return find_python(version)
    except RuntimeUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def python313():
    return _python_or_skip("3.13")


@pytest.fixture(scope="session")
def python312():
    return _python_or_skip("3.12")


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def build_corpus_venv(python: Path, root: Path = CORPUS_ROOT, pins: tuple[str, ...] = CORPUS_PINS) -> Path:
    """Create (once) a venv for ``python`` with the pinned wheels; return its site-packages.

    Raises RuntimeUnavailable when the package index cannot be reached.
    """
    venv = root / "venv313"
    stamp = venv / "interpkit-pins.sha256"
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()
    venv_python = venv / "bin" / "python"
    if not (stamp.is_file() and stamp.read_text() == digest and venv_python.exists()):
        root.mkdir(parents=True, exist_ok=True)
        made = _run([str(python), "-m", "venv", "--clear", str(venv)], timeout=300)
        if made.returncode != 0:
            raise RuntimeUnavailable(f"cannot create the corpus venv ({made.stderr.strip()[-300:]})")
        pip = _run([str(venv_python), "-m", "pip", "install", "--disable-pip-version-check",
                    "--no-deps", "--only-binary=:all:", "--timeout", "30", *pins], timeout=900)
        if pip.returncode != 0:
            tail = (pip.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeUnavailable(f"cannot install the corpus wheels (registry unreachable? {tail})")
        stamp.write_text(digest)
    found = _run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"],
                 timeout=60)
    return Path(found.stdout.strip())


@pytest.fixture(scope="session")
def corpus_site_packages(python313) -> Path:
    try:
        return build_corpus_venv(python313.executable)
    except (RuntimeUnavailable, subprocess.TimeoutExpired) as exc:
        pytest.skip(str(exc))
