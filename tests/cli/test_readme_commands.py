"""README's first two lines are the project's contract (issue 24, 8): the user's install never
changes torch (the pin lives only in the test extra), and .ci/run runs exactly those lines."""
from __future__ import annotations

import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("```", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_commands():
    script = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in script
                if line.strip() and not line.lstrip().startswith("#") and not line.startswith(("set ", "cd "))]
    assert commands == readme_commands()


def test_the_user_install_leaves_torch_alone_and_the_tests_pin_it():
    install, tests = readme_commands()
    assert install.startswith("pip install -e . &&") and "[" not in install.split("&&")[0]
    assert tests.startswith('pip install -e ".[test') and tests.endswith("python -m pytest -q")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = lambda requirements: {r.split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower()  # noqa: E731
                                  for r in requirements}
    assert "torch" not in names(project["dependencies"])
    extras = project["optional-dependencies"]
    assert [extra for extra, requirements in extras.items() if "torch" in names(requirements)] == ["test"]
    assert "torch==2.13.0" in extras["test"]
