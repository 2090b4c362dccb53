"""`interpkit verify --backend copies`: the analyzer's copies verdicts against the copies runtime,
on the fixtures, on torch (predicted and observed to fail, with the cause) and on real wheels."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

# Fixtures whose behaviour the ELF says something about; the hostile ones test the sandbox
# (their PyInit_ aborts, loops, exits), and the op library needs torch (its own test below).
FIXTURES = ("bigstate", "clash_a", "clash_b", "clean", "gilstate", "gnu_unique_cpp", "initial_exec_tls",
            "libpython_linked", "mixed_init", "multi_phase_isolated", "multi_phase_no_slot", "pystate_registry",
            "rpath_absolute", "single_phase_static", "static_type")

# Small cp311 manylinux wheels with extensions, pinned (plain C, Cython, mypyc, PyO3, cffi, numpy).
CORPUS_PINS = ("markupsafe==3.0.2", "pyyaml==6.0.2", "msgpack==1.1.0", "ujson==5.10.0", "regex==2024.11.6",
               "simplejson==3.19.3", "bitarray==3.0.0", "zstandard==0.23.0", "charset-normalizer==3.4.0",
               "orjson==3.10.12", "pydantic-core==2.27.1", "cffi==1.17.1", "psutil==6.1.0", "multidict==6.1.0",
               "frozenlist==1.5.0", "wrapt==1.17.0", "xxhash==3.5.0", "brotli==1.1.0", "lz4==4.3.3",
               "mmh3==5.0.1", "numpy==2.1.3")
CORPUS_ROOT = Path.home() / ".cache" / "interpkit-corpus"


def _verify(paths: list[Path], timeout: int = 1800) -> dict:
    done = subprocess.run([sys.executable, "-m", "interpkit", "verify", *map(str, paths), "--backend", "copies",
                           "--format", "json", "--timeout", "120"],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return json.loads(done.stdout)


def test_fixture_verdicts_agree_with_the_copies_runtime(built_fixtures):
    report = _verify([built_fixtures(name) for name in FIXTURES])
    rows = {row["module"]: row for row in report["results"]}
    assert set(rows) == set(FIXTURES)
    assert {m: (r["predicted"], r["observed"]) for m, r in rows.items() if r["agrees"] is not True} == {}
    assert report["summary"]["agreement"] == 1.0
    # The hazards the copies runtime handles by relinking each copy are still reported.
    assert "IK206" in rows["gnu_unique_cpp"]["codes"] and rows["gnu_unique_cpp"]["observed"] == "ok"
    assert "IK301" in rows["libpython_linked"]["codes"] and rows["libpython_linked"]["observed"] == "ok"


@pytest.mark.torch
def test_torch_is_predicted_and_observed_to_fail_with_its_cause(torch_dir):
    report = _verify([next(torch_dir.glob("_C.cpython-*.so"))])
    row = report["results"][0]
    assert row["module"] == "torch._C"
    assert row["predicted"] == "fail" and "IK308" in row["codes"]
    assert row["observed"] == "fail" and row["status"] == "import_error"
    # The first interpreter imports torch; the second copy of libtorch_python ends the
    # process in its static initialisers, inside the sandboxed probe, not in the tool.
    assert "Key already registered with the same priority: PyInterpreterHooks" in row["message"]
    last = row["outcome"]["steps"][-1]
    assert (last["step"], last["interpreter"]) == ("import", 1)


def _corpus() -> Path:
    """The pinned wheels, downloaded once into ~/.cache and unpacked into one folder."""
    wheels, site = CORPUS_ROOT / "wheels311", CORPUS_ROOT / "site311"
    stamp = site / "interpkit-pins.txt"
    if stamp.is_file() and stamp.read_text() == "\n".join(CORPUS_PINS):
        return site
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                          "--only-binary=:all:", "--timeout", "30", "-d", str(wheels), *CORPUS_PINS],
                         capture_output=True, text=True, timeout=900)
    if got.returncode != 0:
        pytest.skip(f"cannot download the corpus wheels ({(got.stderr.strip().splitlines() or ['?'])[-1]})")
    site.mkdir(parents=True, exist_ok=True)
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    stamp.write_text("\n".join(CORPUS_PINS))
    return site


@pytest.mark.slow
def test_corpus_of_real_wheels_agrees_at_least_95_percent():
    report = _verify([_corpus()], timeout=3600)
    summary = report["summary"]
    disagreements = [(r["module"], r["predicted"], r["observed"], r["message"][:200])
                     for r in report["results"] if r["agrees"] is False]
    print(f"copies corpus: {summary['agreed']}/{summary['decided']} agree; disagreements: {disagreements}")
    assert summary["decided"] >= 40
    assert summary["agreement"] >= 0.95, disagreements
    assert not summary["crashes_predicted_safe"]


@pytest.mark.slow
def test_dependencies_without_python_symbols_are_loaded_once():
    """numpy's vendored OpenBLAS has no Py* references: both interpreters share one mapping of
    it, while each has its own copy of the extension that needs it."""
    from interpkit.native.copies.runtime import CopiesRuntime

    def mapped_files() -> set[str]:
        return {line.split(None, 5)[5] for line in Path("/proc/self/maps").read_text().splitlines()
                if len(line.split(None, 5)) == 6}

    site = _corpus()
    before = mapped_files()  # the test process may hold its own numpy (another test imported it)
    with CopiesRuntime(2, timeout=300, sys_path=[str(site), *sys.path]) as runtime:
        assert runtime.call_all("interpkit.native.guest.probe_steps:import_module", "numpy")
        assert runtime.eval(1, "int(__import__('numpy').arange(10).sum())") == 45
        mapped = mapped_files() - before
    blas = {path for path in mapped if "libscipy_openblas" in path}
    umath = {path for path in mapped if Path(path).name.startswith("_multiarray_umath.")}
    assert len(blas) == 1 and str(site) in next(iter(blas))
    assert len(umath) == 2 and not any(str(site) in path for path in umath)
