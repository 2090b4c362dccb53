"""docs/facts.md fact 5: namespace and static TLS limits give errors that name the cause."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from interpkit.native import limits
from tests.runtime.runtime_helpers import REPO_ROOT, run_python

TWELVE = """
from interpkit.native import Runtime, StaticTLSExhausted
try:
    Runtime(12)
except StaticTLSExhausted as exc:
    print("static-tls:", exc)
"""

FIFTEEN_THEN_ONE = """
from interpkit.native import NamespaceLimitError, Runtime, StaticTLSExhausted
runtime = Runtime(15)
assert runtime.call_all("operator:add", 1, 1) == [2] * 15
try:
    Runtime(1)
except StaticTLSExhausted as exc:
    print("wrong kind:", exc)
except NamespaceLimitError as exc:
    print("limit:", exc)
runtime.close()
"""


def _without_tunables() -> dict[str, str]:
    return {"GLIBC_TUNABLES": ""}


def test_default_tunables_run_out_of_static_tls_with_a_clear_error():
    result = run_python(TWELVE, env=_without_tunables(), timeout=120)
    assert result.returncode == 0, result.stderr[-800:]
    line = result.stdout.strip()
    assert line.startswith("static-tls: cannot start another interpreter (static TLS exhausted")
    assert "libc.so.6" in line and "DF_STATIC_TLS" in line
    assert "GLIBC_TUNABLES=glibc.rtld.nns=16" in line and "15" in line


@pytest.mark.slow
def test_raised_limit_gives_fifteen_then_too_many_interpreters():
    result = run_python(FIFTEEN_THEN_ONE, env={"GLIBC_TUNABLES": "glibc.rtld.nns=16"},
                        timeout=240)
    assert result.returncode == 0, result.stderr[-800:]
    line = result.stdout.strip()
    assert line.startswith("limit: cannot start another interpreter (too many interpreters")
    assert "glibc.rtld.nns=16" in line and "15" in line


def test_more_than_the_ceiling_is_refused_before_any_dlmopen():
    from interpkit.native import NamespaceLimitError, Runtime

    with pytest.raises(NamespaceLimitError, match="too many interpreters.*GLIBC_TUNABLES"):
        Runtime(limits.NAMESPACE_CEILING + 1)


def _static_python311() -> str | None:
    """A python3.11 on PATH that links CPython statically (Debian's does), or None."""
    import subprocess

    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "python3.11"
        if not candidate.is_file() or "shims" in candidate.parts:
            continue
        # Linked statically: no libpython among the objects the running interpreter mapped.
        mapped = subprocess.run([str(candidate), "-c", "print(any('libpython' in line for line in open('/proc/self/maps')))"],
                                capture_output=True, text=True, timeout=60).stdout.strip()
        if mapped == "False":
            return str(candidate)
    return None


def test_static_libpython_is_named():
    python = _static_python311()
    if python is None:
        pytest.skip("no statically linked python3.11 on PATH")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from interpkit.native.limits import find_libpython\n"
            "from interpkit.native.errors import LibpythonNotShared\n"
            "try:\n    print(find_libpython())\n"
            "except LibpythonNotShared as exc:\n    print('not-shared:', exc)\n") % str(REPO_ROOT)
    result = run_python(code, python=python, timeout=60)
    if "No module named" in result.stderr:
        pytest.skip("analyzer's dependencies are not importable by the system Python")
    assert result.stdout.startswith("not-shared: cannot start namespaced interpreters "
                                    "(libpython not shared"), result.stderr[-500:]


def test_tls_users_marks_libc_as_static_tls(libpython):
    # The libc this process runs on, wherever the distribution keeps it.
    libc = next(line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                if line.split()[-1].rpartition("/")[2].startswith("libc.so"))
    users = {Path(user.path).name: user for user in limits.tls_users([libc, str(libpython)])}
    assert users["libc.so.6"].static
    assert users["libc.so.6"].tls_size > 0


def test_nns_tunable_reads_the_start_environment(tmp_path):
    environ = tmp_path / "environ"
    environ.write_bytes(b"A=1\0GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.rtld.nns=16\0")
    assert limits.nns_tunable(environ) == 16
    environ.write_bytes(b"A=1\0")
    assert limits.nns_tunable(environ) is None
