"""What the dynamic loader really binds (LD_DEBUG=bindings), with the host's libpython global."""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from .conftest import run_child

_CHILD = r"""
import json, sys
from interpkit.native.copies.runtime import CopiesRuntime
from interpkit.native.limits import find_libpython
rt = CopiesRuntime(2, timeout=120, sys_path=[{folder!r}, *sys.path])
rt.call_all("interpkit.native.guest.probe_steps:import_module", "clash_a")
assert rt.call_all("clash_a:bump") == [1, 1]
print(json.dumps({{"workdir": str(rt.workdir), "host": str(find_libpython().resolve()),
                  "copies": [str(p) for p in rt.libpython_copies]}}))
rt.close()
"""
_BINDING = re.compile(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `([^']+)'")


def test_py_symbols_of_each_copy_bind_to_that_interpreters_libpython(built_fixtures, tmp_path):
    folder = built_fixtures("clash_a").parent
    child = run_child(_CHILD.format(folder=str(folder)),
                      env={"LD_DEBUG": "bindings", "LD_DEBUG_OUTPUT": str(tmp_path / "ld")})
    assert child.returncode == 0, child.stderr[-2000:]
    facts = json.loads(child.stdout.strip().splitlines()[-1])
    workdir, host = facts["workdir"], facts["host"]
    bindings = [m.groups() for log in tmp_path.glob("ld.*") for m in _BINDING.finditer(log.read_text())]
    ours = [(src, dst, sym) for src, dst, sym in bindings if src.startswith(workdir + "/")]
    assert ours
    # Nothing in any copy binds to the host's libpython, although it is in the global scope.
    assert not [b for b in ours if Path(b[1]).resolve() == Path(host)]
    python_refs = defaultdict(set)
    for src, dst, sym in ours:
        if sym.startswith(("Py", "_Py")) and not sym.startswith("PyInit_"):
            interpreter = src[len(workdir) + 1:].split("/")[0]
            python_refs[(interpreter, Path(src).name.split(".")[0])].add(dst)
    # The extension copy and the libpython copy (its internal references, RTLD_DEEPBIND) of
    # interpreter k bind Py* to libpython copy k and nothing else.
    for k, copy in enumerate(facts["copies"]):
        assert python_refs[(str(k), "clash_a")] == {copy}
        assert python_refs[(str(k), "libpython3")] == {copy}
