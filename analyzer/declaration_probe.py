"""`scan --probe`: settle the declarations the binary does not show by calling the entry point.

Where the static subinterpreters verdict of an extension stays `unknown` because its slot table
cannot be read (IK103), and a CPython of the version the file is built for is found, a
throwaway child of that Python loads the file with ctypes, calls `PyInit_<name>` (or
`PyModExport_<name>`, PEP 793) and reads the slots the returned `PyModuleDef` (or `PySlot`
array) holds: the table a generator fills at run time is filled by then. Nothing is imported
(no exec slot runs); a crash costs only the child. The verdict this gives is marked observed
(`facts["declaration_probe"]`), and the IK103 finding gives way to what was read.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

from interpkit.analyzer.elf.modinit import (MULTIPLE_INTERPRETERS_VALUES, Py_mod_multiple_interpreters, module_slot_id,
                                            pyslot_id)
from interpkit.core.findings import Backend, FileKind, FileResult, Severity, Verdict

# The child: offsets of struct PyModuleDef on 64-bit builds (PyModuleDef_Base is PyObject_HEAD,
# m_init, m_index, m_copy; then m_name, m_doc, m_size, m_methods, m_slots).
_CHILD = r"""
import ctypes, json, sys
path, name = sys.argv[1], sys.argv[2]
lib = ctypes.PyDLL(path)
out = {}
export = getattr(lib, "PyModExport_" + name, None)
if export is not None:
    export.restype = ctypes.c_void_p
    table, entry = export(), "export"
else:
    init = getattr(lib, "PyInit_" + name)
    init.restype = ctypes.py_object
    made = init()
    if type(made).__name__ != "moduledef":
        print(json.dumps({"kind": "single-phase"}))
        raise SystemExit(0)
    table, entry = ctypes.c_void_p.from_address(id(made) + 72).value, "def"
slots = []
while table:
    word = ctypes.c_uint32.from_address(table).value
    if word == 0 or len(slots) > 64:
        break
    slots.append([word, ctypes.c_void_p.from_address(table + 8).value or 0])
    table += 16
print(json.dumps({"kind": "multi-phase", "table": entry, "slots": slots}))
"""


def _python_for(version: str) -> str | None:
    from interpkit.core.errors import RuntimeUnavailable
    from interpkit.native.pythons import find_python

    try:
        return str(find_python(version).executable)
    except RuntimeUnavailable:
        return None


def read_declaration(python: str, path: Path, module: str, timeout: float = 60.0) -> dict:
    """{"declared": "per-interpreter-gil-supported" | ... | "single-phase"} or {"error": why}."""
    try:
        done = subprocess.run([python, "-I", "-c", _CHILD, str(path), module], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer in {timeout:.0f} s"}
    if done.returncode != 0:
        cause = "signal %d" % -done.returncode if done.returncode < 0 else \
            (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]
        return {"error": cause[:200]}
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if answer["kind"] == "single-phase":
        return {"declared": "single-phase"}
    decode = pyslot_id if answer["table"] == "export" else module_slot_id
    slots = {decode(word): value for word, value in answer["slots"]}
    if None in slots:
        return {"error": "the table holds a slot id that is no module slot"}
    if Py_mod_multiple_interpreters not in slots:
        return {"declared": "absent"}
    return {"declared": MULTIPLE_INTERPRETERS_VALUES.get(slots[Py_mod_multiple_interpreters], "unknown")}


def apply_probe(results: list[FileResult]) -> None:
    """Settle each unknown subinterpreters verdict that IK103 caused, in place."""
    pythons: dict[str, str | None] = {}
    for result in results:
        if result.kind is not FileKind.EXTENSION or result.verdicts.get(Backend.SUBINTERPRETERS) is not Verdict.UNKNOWN:
            continue
        unread = [f for f in result.findings if f.code == "IK103"]
        version = result.facts.get("built_for")
        if not unread or not version:
            continue
        if version not in pythons:
            pythons[version] = _python_for(version)
        python = pythons[version]
        if python is None:
            result.facts["declaration_probe"] = {"error": f"no CPython {version} found to probe with"}
            continue
        observed = {}
        for finding in unread:
            init = dict(finding.data).get("init", "")
            module = init.split("_", 1)[1] if "_" in init else result.module
            observed[init] = read_declaration(python, Path(result.path), module)
        result.facts["declaration_probe"] = {"python": python, "observed": observed}
        if any("error" in answer for answer in observed.values()):
            continue
        refused = {init: answer["declared"] for init, answer in observed.items()
                   if answer["declared"] != "per-interpreter-gil-supported"}
        settled = []
        for finding in result.findings:
            if finding.code != "IK103":
                settled.append(finding)
                continue
            init = dict(finding.data).get("init", "")
            declared = observed[init]["declared"]
            verdict = Verdict.FAIL if init in refused else Verdict.OK
            settled.append(replace(finding, severity=Severity.ERROR if verdict is Verdict.FAIL else Severity.INFO,
                                   message=f"observed by calling `{init}` in a child of {python}: declares {declared}",
                                   verdicts=((Backend.SUBINTERPRETERS, verdict),)))
        result.findings = settled
        result.verdicts = {}
        result.compute_verdicts()
