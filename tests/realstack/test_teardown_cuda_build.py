"""Teardown with the CUDA torch build (real-stack venv): stop one while the last serves, close,
process exit 0, torch in the host or not, after import or inference, N = 1, 2, 4.

Before the fix every one of these aborted with "double free or corruption (out)" at the first
worker thread's exit (native/README.md, "Teardown"). The rows not here (N=2 with torch in the
host and N=4 without, after inference) run in test_models.py with real models.
"""
from __future__ import annotations

import pytest

from tests.runtime.teardown_checks import check_clean_teardown

pytestmark = [pytest.mark.realstack, pytest.mark.slow]


@pytest.mark.parametrize(("n", "host", "phase"), [(1, "host", "infer"), (2, "bare", "import"),
                                                  (4, "host", "import")])
def test_torch_teardown_is_clean_cuda_build(realstack_python, n, host, phase):
    check_clean_teardown(realstack_python, n, host, phase)
