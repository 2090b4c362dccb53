"""The bench's realistic environment: a venv of pinned popular packages (what a user scans before
packaging), and a tools venv with ruff and bandit to compare against. Built once from the
package index under ~/.cache/interpkit-bench (INTERPKIT_BENCH_CACHE), named by a hash of the
pins and the Python version, so a changed list builds a new one and nothing is shared with the
tests."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

# 57 popular distributions (web, data, CLI, parsing; pure Python and compiled, PyO3/Cython/C),
# fully pinned with their dependencies so --no-deps installs the same tree every time.
SITE_PINS = (
    "aiohappyeyeballs==2.7.1", "aiohttp==3.14.5", "aiosignal==1.4.0", "annotated-types==0.8.0", "attrs==26.1.0",
    "blinker==1.9.0", "certifi==2026.10.19.post1", "cffi==2.1.1", "charset-normalizer==3.5.3", "click==8.5.1",
    "cryptography==50.0.2", "filelock==4.3.1", "Flask==3.1.3", "frozenlist==1.8.0", "fsspec==2026.9.0",
    "idna==3.20", "itsdangerous==2.2.0", "Jinja2==3.1.6", "jsonschema==4.26.0", "jsonschema-specifications==2025.9.1",
    "lxml==6.1.3", "markdown-it-py==4.3.0", "MarkupSafe==3.0.4", "mdurl==0.1.2", "msgpack==1.2.4",
    "multidict==7.2.1", "networkx==3.6.1", "numpy==2.4.6", "orjson==3.13.0", "packaging==26.4", "pandas==3.1.1",
    "pillow==13.0.0", "propcache==0.5.4", "protobuf==7.36.2", "psutil==7.2.2", "pycparser==3.12",
    "pydantic==2.14.4", "pydantic_core==2.50.5", "Pygments==2.21.0", "python-dateutil==4.0.0", "pytz==2026.6",
    "PyYAML==6.0.4", "referencing==0.37.0", "regex==2026.11.19", "requests==2.34.2", "rich==15.0.0",
    "rpds-py==2026.9.1", "six==1.17.0", "SQLAlchemy==2.1.9", "tqdm==4.70.1", "typing-inspection==0.4.5",
    "typing_extensions==4.16.0", "tzdata==2026.6", "ujson==6.1.0", "urllib3==2.8.0", "Werkzeug==3.1.9",
    "yarl==1.25.1",
)
TOOL_PINS = ("ruff==0.17.6", "bandit==1.9.4", "stevedore==5.10.0", "PyYAML==6.0.4", "rich==15.0.0",
             "markdown-it-py==4.3.0", "mdurl==0.1.2", "Pygments==2.21.0")
BENCH_ROOT = Path(os.environ.get("INTERPKIT_BENCH_CACHE", Path.home() / ".cache" / "interpkit-bench"))


def _venv_with(name: str, pins: tuple[str, ...]) -> Path:
    """A venv holding exactly `pins`, named by their hash so a changed list builds a new one."""
    digest = hashlib.sha1("\n".join((sys.version, *pins)).encode()).hexdigest()[:12]
    root = BENCH_ROOT / f"{name}-{digest}"
    done = root / ".complete"
    if done.is_file():
        return root
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    result = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", *pins],
                            capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["pip failed"]
        raise SystemExit(f"cannot build the bench environment {root} ({tail[0]})")
    done.write_text("\n".join(pins) + "\n")
    return root


def site_packages(root: Path) -> Path:
    return root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def bench_site() -> Path:
    return site_packages(_venv_with("site", SITE_PINS))


def tools_venv() -> Path:
    return _venv_with("tools", TOOL_PINS)


if __name__ == "__main__":
    print(bench_site())
    print(tools_venv())
