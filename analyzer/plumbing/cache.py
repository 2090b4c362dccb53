"""The persistent scan cache: one SQLite file per kind of entry under one folder.

The folder is INTERPKIT_CACHE_DIR, else $XDG_CACHE_HOME/interpkit or ~/.cache/interpkit;
INTERPKIT_NO_CACHE=1 turns every store off. Callers build keys that change whenever the answer
could (the file's real path, size and mtime, the tool version, the rules, the analysis code),
so an entry is never stale, only unused. Any failure (read-only folder, a corrupt or locked
file) costs speed only: the store then behaves as empty.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Iterable, Iterator

from interpkit.core.version import VERSION


def cache_root() -> Path | None:
    if os.environ.get("INTERPKIT_NO_CACHE"):
        return None
    root = os.environ.get("INTERPKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "interpkit")
    return Path(root)


def code_fingerprint(files: Iterable[Path], *extra: str) -> str:
    """The tool version, `extra` and each source file's size and mtime, hashed."""
    digest = hashlib.sha1("|".join((VERSION, *extra)).encode())
    for file in files:
        try:
            st = os.stat(file)
        except OSError:
            continue
        digest.update(f"{file}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:20]


def file_key(path: Path, *parts: object) -> str | None:
    """A key for the file as it is now (real path, size, mtime) and `parts`; None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    text = "|".join([realpath(path), str(st.st_size), str(st.st_mtime_ns), *map(str, parts)])
    return hashlib.sha1(text.encode()).hexdigest()


# -- real paths during one scan ----------------------------------------------------------------
# os.path.realpath walks every component of a path with one lstat each: a site-packages file is
# ten of them, and a scan asks for tens of thousands of real paths (keys, the graph's identities,
# duplicates). Inside one_scan(), the real path of each folder is remembered, so a file costs
# one lstat: realpath(folder/name) is realpath(folder)/name unless name itself is a symbolic
# link (then the full walk runs). Each answer of resolve() is remembered too, by the text asked
# (an entry is named by the rule pass, the graph and the reached-file pass alike: three resolves
# of one path cost one), so a scan assumes that no file it reads becomes a link while it runs,
# as it assumes of folders. Outside it (a long-lived `serve`, tests that rename folders between
# scans), every call walks the whole path as before.

_FOLDERS: dict[str, str] | None = None
_RESOLVED: dict[str, Path] | None = None


@contextlib.contextmanager
def one_scan() -> Iterator[None]:
    """Real paths of folders, and resolve()'s answers, are remembered until the outermost one_scan() ends."""
    global _FOLDERS, _RESOLVED
    outer = _FOLDERS, _RESOLVED
    if outer[0] is None:
        _FOLDERS, _RESOLVED = {}, {}
    try:
        yield
    finally:
        _FOLDERS, _RESOLVED = outer


def realpath(path) -> str:
    """os.path.realpath(path), from the remembered real path of its folder inside one_scan()."""
    text = os.fspath(path)
    folders = _FOLDERS
    if folders is None or isinstance(text, bytes):
        return os.path.realpath(text)
    head, name = os.path.split(text)
    if not head or name in ("", ".", ".."):
        return os.path.realpath(text)
    try:
        if stat.S_ISLNK(os.lstat(text).st_mode):
            return os.path.realpath(text)
    except OSError:
        pass   # missing: realpath keeps the name as it is, and so do we
    real_head = folders.get(head)
    if real_head is None:
        real_head = folders[head] = os.path.realpath(head)
    return os.path.join(real_head, name)


def resolve(path) -> Path:
    """Path(path).resolve(), through realpath(): the same answer, RuntimeError on a symbolic
    link loop included (pathlib's check on Python 3.11); inside one_scan() each answer is kept."""
    memo = _RESOLVED
    if memo is not None:
        text = os.fspath(path)
        found = memo.get(text)
        if found is not None:
            return found
    real = Path(realpath(path if isinstance(path, Path) else Path(path)))   # a Path's text is normalised already
    if sys.version_info < (3, 13):   # 3.13 returns what realpath gives, loop or not
        try:
            os.stat(real)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RuntimeError(f"Symlink loop from {os.fspath(path)!r}") from None
    if memo is not None:
        memo[text] = real
    return real


class Store:
    """key -> value (text or bytes) in `<cache root>/<name>.sqlite`."""

    def __init__(self, name: str, *, enabled: bool = True) -> None:
        self.db: sqlite3.Connection | None = None
        self.trusted = False
        root = cache_root() if enabled else None
        if root is None:
            return
        try:
            root.mkdir(parents=True, exist_ok=True)
            path = root / f"{name}.sqlite"
            self.db = sqlite3.connect(str(path), timeout=10)
            # a cache: losing the last writes on a power cut only costs a rebuild, so no fsync each
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            self.trusted = _private(path)
        except (OSError, sqlite3.Error):
            self.db = None

    @property
    def enabled(self) -> bool:
        return self.db is not None

    def get_many(self, keys: list[str]) -> dict[str, object]:
        found: dict[str, object] = {}
        if self.db is None:
            return found
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self.db.execute(f"SELECT key, value FROM entries WHERE key IN ({marks})", chunk))
        except sqlite3.Error:
            return {}
        return found

    def get(self, key: str):
        return self.get_many([key]).get(key)

    def put_many(self, rows: Iterable[tuple[str, object]]) -> None:
        if self.db is None:
            return
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO entries (key, value) VALUES (?, ?)", rows)
        except sqlite3.Error:
            pass

    def keep_newest(self, count: int) -> None:
        """Drop all but the `count` most recently written entries (whole reports are large)."""
        if self.db is None:
            return
        try:
            with self.db:
                self.db.execute("DELETE FROM entries WHERE rowid NOT IN "
                                "(SELECT rowid FROM entries ORDER BY rowid DESC LIMIT ?)", (count,))
        except sqlite3.Error:
            pass

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def remembered(name: str, key_parts: Iterable[object], compute):
    """compute() once per key (JSON-able results), e.g. an export check whose inputs did not change."""
    import json

    store = Store(name)
    key = hashlib.sha1("|".join(map(str, (VERSION, *key_parts))).encode()).hexdigest() if store.enabled else None
    cached = store.get(key) if key else None
    if cached is not None:
        store.close()
        return json.loads(cached)
    value = compute()
    if key:
        store.put_many([(key, json.dumps(value))])
    store.close()
    return value


def _private(path: Path) -> bool:
    """Ours alone (owner is us, nobody else may write): only then may pickled entries be loaded,
    since unpickling what another user wrote would run their code."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022
