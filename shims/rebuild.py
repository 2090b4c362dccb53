"""Rebuild an sdist or a source tree with flags that remove the hazards, and say what changed.

The flags, and the hazard each removes:
  -fno-gnu-unique                 C++ inline/template statics become STB_WEAK, not STB_GNU_UNIQUE
  -fvisibility=hidden             only PyInit_* (declared PyMODINIT_FUNC) stays exported: no clashes
  -ftls-model=global-dynamic      __thread variables leave the static TLS block (no DF_STATIC_TLS)
  -Wl,--exclude-libs,ALL          symbols of static archives linked in are not re-exported

The source is copied into a private temp folder and built twice with ``pip wheel`` (once as
it is, once with the flags), with a clean compiler environment, so the before/after
difference is the flags' doing alone. Both wheels are scanned; the hardened one then goes
through the wheel repair (``interpkit.shims.wheel``), which relinks what flags cannot reach and
re-verifies. By default the build uses the running environment's setuptools
(``--no-build-isolation``: offline and fast); ``INTERPKIT_BUILD_ISOLATION=1`` lets pip build
in its own isolated environment instead.

Known problems: a source that asks for a TLS model or visibility explicitly
(``__attribute__((tls_model("initial-exec")))``) keeps it; the re-scan shows it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.core.findings import FileKind
from interpkit.shims import wheel as wheel_shim

HARDENING_CFLAGS = ("-fno-gnu-unique", "-fvisibility=hidden", "-ftls-model=global-dynamic")
HARDENING_LDFLAGS = ("-Wl,--exclude-libs,ALL",)
BUILD_TIMEOUT_S = 900
_COMPILER_ENV = ("CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS")


def is_source(path: Path) -> bool:
    """A source tree (setup.py or pyproject.toml at its top) or an sdist archive."""
    path = Path(path)
    if path.is_dir():
        return (path / "setup.py").is_file() or (path / "pyproject.toml").is_file()
    return path.name.endswith((".tar.gz", ".tgz"))


def _unpack_sdist(archive: Path, dest: Path) -> Path:
    """Extract an sdist safely (tarfile's 'data' filter refuses links out, devices, absolute paths)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"cannot rebuild {archive} (not a readable sdist: {exc})") from None
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1 or not is_source(tops[0]):
        raise InputError(f"cannot rebuild {archive} (no single top folder with setup.py or pyproject.toml)")
    return tops[0]


def build_wheel(source: Path, dest: Path, *, hardened: bool, python: str = sys.executable) -> Path:
    """`pip wheel` the source into dest; returns the wheel. Raises InputError with pip's last line."""
    env = {k: v for k, v in os.environ.items() if k not in _COMPILER_ENV and not k.startswith("PIP_")}
    if hardened:
        env["CFLAGS"] = " ".join(HARDENING_CFLAGS)
        env["CXXFLAGS"] = " ".join(HARDENING_CFLAGS)
        env["LDFLAGS"] = " ".join(HARDENING_LDFLAGS)
    dest.mkdir(parents=True, exist_ok=True)
    command = [python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
               "-q", "-w", str(dest), str(source)]
    if os.environ.get("INTERPKIT_BUILD_ISOLATION") != "1":
        command.insert(5, "--no-build-isolation")
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"cannot rebuild {source.name} (the build ran past {BUILD_TIMEOUT_S}s)") from None
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise InputError(f"cannot rebuild {source.name} (pip wheel failed: {pip_error(proc.stderr, proc.stdout)[:300]})")
    return wheels[0]


_PIP_CHATTER = ("hint:", "note:", "error: subprocess-exited-with-error", "error: failed-wheel-build",
                "[end of output]", "ERROR: Failed building wheel", "ERROR: Failed to build")


def pip_error(stderr: str, stdout: str = "") -> str:
    """The line of a failed `pip wheel` that says what went wrong.

    pip ends with "hint: See above for details."; the cause is in the build backend's output
    that pip quotes between "╰─>" and "[end of output]" (e.g. "error: invalid command
    'bdist_wheel'" when the wheel package is missing), so that block's last error line wins.
    """
    lines = [line.strip().lstrip("│").strip() for line in (stderr + "\n" + stdout).splitlines()]
    lines = [line for line in lines if line]
    quoted: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("╰─>"):
            inside = True
            continue
        if line.startswith("[end of output]"):
            inside = False
        elif inside:
            quoted.append(line)
    for pool in (quoted, lines):
        useful = [line for line in pool if not line.startswith(_PIP_CHATTER) and not line.startswith("×")]
        errors = [line for line in useful if "error" in line.lower()]
        if errors or useful:
            return (errors or useful)[-1]
    return "no output"


def _scan_wheel_findings(wheel: Path, options) -> dict[str, set[tuple[str, str | None]]]:
    """member path -> {(code, symbol)} for the ELF files of a wheel."""
    from interpkit.analyzer.scan import scan_paths

    report = scan_paths([wheel], options.config, only="elf")
    out: dict[str, set[tuple[str, str | None]]] = {}
    for fr in report.files:
        if fr.kind in (FileKind.EXTENSION, FileKind.LIBRARY) and "!" in str(fr.path):
            member = str(fr.path).split("!", 1)[1]
            out[member] = {(f.code, f.symbol) for f in fr.findings}
    return out


def rebuild(path: Path, staging: Path, options, outcome) -> Path:
    """Build plain and hardened wheels, record the difference, repair the hardened wheel."""
    work = staging / "rebuild"
    work.mkdir()
    if Path(path).is_dir():
        source = work / "src"
        shutil.copytree(path, source, symlinks=True,
                        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.so", "*.o"))
    else:
        source = _unpack_sdist(Path(path), work / "sdist")
    plain = build_wheel(source, work / "plain", hardened=False)
    shutil.rmtree(source / "build", ignore_errors=True)
    hardened = build_wheel(source, work / "hardened", hardened=True)
    before = _scan_wheel_findings(plain, options)
    after = _scan_wheel_findings(hardened, options)
    outcome.notes.append("rebuilt with " + " ".join(HARDENING_CFLAGS + HARDENING_LDFLAGS))
    outcome.rebuild = rebuild_changes(before, after)
    for change in outcome.rebuild:
        outcome.notes.append(f"{change['member']}: flags removed {', '.join(change['removed_by_flags']) or 'nothing'}"
                             + (f"; still {', '.join(change['kept'])}" if change["kept"] else ""))
    return wheel_shim.repair_wheel(hardened, staging, options, outcome)


def rebuild_changes(before: dict[str, set[tuple[str, str | None]]],
                    after: dict[str, set[tuple[str, str | None]]]) -> list[dict]:
    """Per member: the codes the flags removed (none of their findings is left), the codes
    still found (the table lists those), the new ones, and how many findings went away.
    A code with one symbol gone and another kept is `kept`, never both: the header and the
    table then agree."""
    changes = []
    for member in sorted(set(before) | set(after)):
        old, new = before.get(member, set()), after.get(member, set())
        old_codes, new_codes = {code for code, _ in old}, {code for code, _ in new}
        changes.append({"member": member, "removed_by_flags": sorted(old_codes - new_codes),
                        "added_by_flags": sorted(new_codes - old_codes), "kept": sorted(old_codes & new_codes),
                        "findings_removed": len(old - new)})
    return changes


def plan_rebuild(path: Path, outcome) -> None:
    """--dry-run / --check on a source tree: what a patch would do, without building anything
    (two wheel builds take minutes, and the findings of the rebuilt wheel exist only after)."""
    path = Path(path)
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="interpkit-sdist-") as folder:
            _unpack_sdist(path, Path(folder))      # an unreadable sdist is refused here too
    outcome.rebuild_planned = True
    outcome.changed = True
    outcome.notes.append(f"would rebuild {path.name} with " + " ".join(HARDENING_CFLAGS + HARDENING_LDFLAGS)
                         + ", then repair the wheel; what the flags remove is known after the build "
                         "(run without --dry-run/--check)")
