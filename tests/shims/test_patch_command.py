"""`interpkit patch` end to end on compiled fixtures: before -> after in the real runtimes."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


from interpkit.cli import main
from interpkit.core.findings import Backend, Finding, FileKind, FileResult, Severity, Verdict
from tests.shims.shim_helpers import run_child
from interpkit.shims.plan import PatchPlan
from interpkit.shims.relink import read_state
from interpkit.shims.strategies import Context, Handling, plan_finding


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "shims" / "patch-schema.json").read_text())


def patch_json(capsys, *args) -> tuple[int, dict]:
    """Run `interpkit patch ... --format json`; every report is checked against the schema."""
    import jsonschema

    code = main(["patch", *map(str, args), "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, SCHEMA)
    return code, data


def findings_of(data: dict) -> dict[str, dict]:
    return {f["code"]: f for r in data["results"] for file in r["files"] for f in file["findings"]}


def test_gnu_unique_fixed_input_untouched_idempotent(capsys, tmp_path, fixture_copy):
    source = fixture_copy("gnu_unique_cpp")
    digest = sha256(source)
    out = tmp_path / "out"
    code, data = patch_json(capsys, source, "-o", out, "--backend", "copies", "--backend", "namespaces")
    assert code == 0, data
    assert sha256(source) == digest and data["results"][0]["input_sha256"] == digest
    patched = out / source.name
    assert read_state(source).gnu_unique and read_state(patched).gnu_unique == ()
    found = findings_of(data)
    assert found["IK206"]["after"] == "fixed"
    # The copies runtime relinks every extension it loads (libpython DT_NEEDED, GNU_UNIQUE weak),
    # so its verdict is ok before the patch too; the patch's relink makes the file itself safe.
    assert found["IK302"]["after"] == "not needed"
    file = data["results"][0]["files"][0]
    assert file["verdicts"]["copies"] == {"before": "ok", "after": "ok"}
    assert file["verify"]["namespaces"] == {"before": "ok", "after": "ok"}
    assert not [p for p in out.iterdir() if p.name.startswith(".interpkit-")]  # no staging left behind

    # Patching the patched file plans nothing and writes the same bytes.
    code, again = patch_json(capsys, patched, "-o", tmp_path / "out2", "--backend", "copies", "--no-verify")
    assert code == 0 and again["results"][0]["changed"] is False
    assert (tmp_path / "out2" / source.name).read_bytes() == patched.read_bytes()
    # Patching the original again gives byte-identical output, replacing the old file atomically.
    first = patched.read_bytes()
    code, _ = patch_json(capsys, source, "-o", out, "--backend", "copies", "--no-verify")
    assert code == 0 and patched.read_bytes() == first


def test_check_and_dry_run_write_nothing(capsys, tmp_path, fixture_copy):
    source = fixture_copy("gnu_unique_cpp")
    assert main(["patch", str(source), "--check", "--backend", "copies"]) == 1
    assert main(["patch", str(source), "--dry-run", "--backend", "copies", "-o", str(tmp_path / "never")]) == 0
    text = capsys.readouterr().out
    assert "plan (nothing written):" in text and "unique-to-weak" in text and "STB_GNU_UNIQUE -> STB_WEAK" in text
    assert not (tmp_path / "never").exists() or not any((tmp_path / "never").iterdir())
    code, data = patch_json(capsys, source, "--dry-run", "--backend", "copies")
    assert code == 0 and data["mode"] == "dry-run" and data["results"][0]["output"] is None
    assert findings_of(data)["IK206"]["after"] == "would be fixed"
    assert {e["kind"] for e in data["results"][0]["files"][0]["edits"]} == {"unique-to-weak"}
    assert main(["patch", str(source), "-o", str(tmp_path / "out"), "--backend", "copies", "--no-verify"]) == 0
    capsys.readouterr()
    assert main(["patch", str(tmp_path / "out" / source.name), "--check", "--backend", "copies"]) == 0


def test_single_phase_state_shared_before_private_after_copies(capsys, tmp_path, fixture_copy):
    """Legacy subinterpreters (how CPython serves a single-phase module to every interpreter from
    one image) share the module's C statics; with the per-interpreter copies the patch sets up,
    each interpreter runs its own PyInit. Same runtime, same N, before and after."""
    source = fixture_copy("single_phase_static")
    code, data = patch_json(capsys, source, "-o", tmp_path / "out", "--backend", "copies",
                            "--interpreters", "3")
    assert code == 0, data
    file = data["results"][0]["files"][0]
    assert file["verify"]["copies"] == {"before": "shared_state", "after": "ok"}
    assert findings_of(data)["IK202"]["after"] == "handled at load time"
    manifest = json.loads((tmp_path / "out" / "interpkit-copies.json").read_text())
    assert manifest["modules"] == {"single_phase_static": source.name}
    other = fixture_copy("static_type")
    assert main(["patch", str(other), "-o", str(tmp_path / "out"), "--backend", "copies", "--no-verify"]) == 0
    manifest = json.loads((tmp_path / "out" / "interpkit-copies.json").read_text())
    assert manifest["modules"] == {"single_phase_static": source.name, "static_type": other.name}


def test_unfixable_is_reported_with_reason_and_exit_1(capsys, tmp_path, fixture_copy):
    source = fixture_copy("initial_exec_tls")
    code, data = patch_json(capsys, source, "-o", tmp_path / "out", "--no-verify")
    assert code == 1
    tls = findings_of(data)["IK207"]
    assert tls["after"] == "unfixable" and "global-dynamic" in tls["reason"]
    assert data["summary"]["unfixed"] >= 1

    # Isolated subinterpreters refuse single-phase modules: copies cannot help there, and it says so.
    single = fixture_copy("single_phase_static")
    code, data = patch_json(capsys, single, "-o", tmp_path / "out2", "--backend", "subinterpreters", "--no-verify")
    assert code == 1
    assert "own-GIL subinterpreters refuse" in findings_of(data)["IK101"]["reason"]


def test_pyo3_module_is_unfixable(fixture_copy):
    """No PyO3 fixture can be compiled here (no Rust toolchain); the decision is checked on the
    finding the binding-generator rule emits for one, against a real binary."""
    ext = fixture_copy("clean")
    finding = Finding("IK307", Severity.ERROR, "built with pyo3: PyO3 refuses to initialise in a second interpreter",
                      ext, backends=frozenset(Backend), verdicts=((Backend.SUBINTERPRETERS, Verdict.FAIL),),
                      data=(("generator", "pyo3"),))
    plan = PatchPlan()
    handling = plan_finding(plan, FileResult(ext, FileKind.EXTENSION, module="clean"), finding,
                            Context(backends=frozenset(Backend))).handling
    assert handling == Handling.UNFIXABLE
    assert "PyO3" in plan.files[ext].unfixable[0].reason and plan.is_empty


def test_clashing_exports_hidden_stop_interposing(capsys, tmp_path, fixture_copy):
    """clash_a and clash_b both export interpkit_shared_counter. Loaded RTLD_GLOBAL (as the copies
    backend's base namespace or sys.setdlopenflags does), clash_b's bump() counts in clash_a's
    static; after the patch hides the clash, each module counts on its own."""
    folder = tmp_path / "pkg"
    fixture_copy("clash_a", folder)
    fixture_copy("clash_b", folder)
    code, data = patch_json(capsys, folder, "-o", tmp_path / "out", "--backend", "copies", "--no-verify")
    assert code == 0, data
    assert {f["after"] for f in findings_of(data).values() if f["code"] == "IK304"} == {"fixed"}
    probe = """
        import os, sys
        sys.setdlopenflags(os.RTLD_GLOBAL | os.RTLD_NOW)
        sys.path.insert(0, {folder!r})
        import clash_a, clash_b
        print(clash_a.bump(), clash_b.bump())
    """
    before = run_child(probe.format(folder=str(folder)))
    after = run_child(probe.format(folder=str(tmp_path / "out" / "pkg")))
    assert before.stdout.split() == ["1", "2"], before.stderr
    assert after.stdout.split() == ["1", "1"], after.stderr


def test_bad_input_is_one_line(capsys, tmp_path):
    assert main(["patch", str(tmp_path / "missing.so"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    (tmp_path / "x.so").write_text("not an elf")
    assert main(["patch", str(tmp_path / "x.so")]) == 2
    assert "-o OUTDIR" in capsys.readouterr().err


def test_unique_symbols_that_also_clash_are_hidden(capsys, tmp_path, fixture_copy):
    """Two C++ extensions with the same inline static: GNU_UNIQUE and a clash on one symbol. Hiding
    subsumes weakening, so the plan holds one edit per symbol and no contradiction."""
    fixture_copy("gnu_unique_cpp", tmp_path / "pkg" / "a")
    fixture_copy("gnu_unique_cpp", tmp_path / "pkg" / "b")
    code, data = patch_json(capsys, tmp_path / "pkg", "-o", tmp_path / "out", "--backend", "copies", "--no-verify")
    assert code == 0, data
    for file in data["results"][0]["files"]:
        after = {f["code"]: f["after"] for f in file["findings"]}
        assert after["IK206"] == "fixed" and after["IK304"] == "fixed"
        kinds = {e["target"]: e["kind"] for e in file["edits"]}
        assert kinds["_ZZN18gnu_unique_fixture12call_counterEvE7counter"] == "hide-symbol"
    for patched in (tmp_path / "out" / "pkg").rglob("*.so"):
        assert read_state(patched).gnu_unique == () and read_state(patched).exports == ("PyInit_gnu_unique_cpp",)


def test_failed_patch_keeps_previous_output(capsys, tmp_path, fixture_copy):
    """The old output stays whole when a later patch of an input with the same name fails (unusable input: exit 2), and no
    staging folder is left behind."""
    good = fixture_copy("gnu_unique_cpp")
    out = tmp_path / "out"
    assert main(["patch", str(good), "-o", str(out), "--no-verify", "--backend", "copies"]) == 0
    before = (out / good.name).read_bytes()
    broken = tmp_path / "broken" / good.name
    broken.parent.mkdir()
    broken.write_bytes(good.read_bytes()[:300])      # a truncated ELF
    capsys.readouterr()
    code = main(["patch", str(broken), "-o", str(out), "--no-verify", "--backend", "copies"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"cannot patch {good.name}" in err
    assert (out / good.name).read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [good.name, "interpkit-copies.json"]


def test_isolated_subinterpreters_refusal_stays_and_is_observed(capsys, tmp_path, built_fixtures, python_for):
    """A 3.13 build of a single-phase module: own-GIL subinterpreters refuse it before and after the
    patch (observed in the real runtime), and the report calls it unfixable, with exit 1."""
    import shutil

    built = built_fixtures("single_phase_static", python=python_for("3.13"))
    source = tmp_path / "in" / built.name
    source.parent.mkdir()
    shutil.copyfile(built, source)
    code, data = patch_json(capsys, source, "-o", tmp_path / "out", "--backend", "subinterpreters")
    assert code == 1
    file = data["results"][0]["files"][0]
    assert file["verify"]["subinterpreters"] == {"before": "import_error", "after": "import_error"}
    assert file["verdicts"]["subinterpreters"] == {"before": "fail", "after": "fail"}
    assert findings_of(data)["IK101"]["after"] == "unfixable"


def test_binary_for_another_python_is_unfixable_by_its_data(capsys, tmp_path, fixture_copy):
    """IK301 records the Python a binary was built for (`built_for`) when its libpython DT_NEEDED
    names another one; the plan reads that datum, not the message, and refuses to relink."""
    built = fixture_copy("libpython_linked")          # built for, and linked to, the running 3.11
    renamed = built.with_name(built.name.replace("cpython-311", "cpython-312"))  # now tagged 3.12
    built.rename(renamed)
    code, data = patch_json(capsys, renamed, "-o", tmp_path / "out", "--backend", "copies", "--no-verify")
    assert code == 1
    found = findings_of(data)["IK301"]
    assert found["after"] == "unfixable" and "for another Python" in found["reason"], found
