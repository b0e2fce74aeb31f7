"""Interpreters and virtual environments for the two sides of a benchmark.

ours: the project installed editable (`pip install -e PROJECT uvloop`), or the
      interpreter running the driver when it already imports the project's sdax
      (the project's .venv under `make bench`).
ref:  sdax 0.7.2 from the package index with uvloop, only ever measured.
Both are cached under ~/.cache/sdax-bench/<side>-<X.Y> and reinstalled only
when what they should hold changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sdax-bench"
DEFAULT_VERSIONS = ("3.11", "3.12", "3.13")
REF_PACKAGES = ("sdax==0.7.2", "uvloop")


def clean_env() -> dict[str, str]:
    """The environment for child interpreters: nothing that could redirect imports."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONASYNCIODEBUG", "VIRTUAL_ENV"}
    return {key: value for key, value in os.environ.items() if key not in drop}


def probe(python: str, code: str) -> str | None:
    """stdout of `python -c code`, run from / so no project folder is importable."""
    try:
        done = subprocess.run(
            [python, "-c", code], cwd="/", env=clean_env(), capture_output=True, text=True
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def version_of(python: str) -> str | None:
    return probe(python, "import sys; print('%d.%d' % sys.version_info[:2])")


def find_python(version: str) -> str | None:
    """An interpreter for X.Y: pyenv's newest first, then PATH."""
    root = _pyenv_root()
    if root is not None:
        candidates = (root / "versions").glob(f"{version}.*/bin/python{version}")
        if newest := max(candidates, key=_release, default=None):
            return str(newest)
    found = shutil.which(f"python{version}")
    return found if found and version_of(found) == version else None


def _release(python: Path) -> tuple[int, ...]:
    """(3, 11, 7) for .../versions/3.11.7/bin/python3.11; pre-releases sort first."""
    parts = python.parent.parent.name.split(".")
    return tuple(int(part) if part.isdigit() else -1 for part in parts)


def _pyenv_root() -> Path | None:
    if shutil.which("pyenv") is None:
        return None
    done = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def resolve(spec: str) -> str:
    """`--python` accepts X.Y or a path to an interpreter."""
    if spec.replace(".", "").isdigit():
        found = find_python(spec)
        if found is None:
            raise SystemExit(f"no Python {spec} found (pyenv or PATH)")
        return found
    if shutil.which(spec) is None:
        raise SystemExit(f"no interpreter at {spec}")
    return spec


def default_pythons() -> list[str]:
    return [found for version in DEFAULT_VERSIONS if (found := find_python(version))]


def _imports_project(python: str) -> bool:
    where = probe(python, "import sdax, uvloop; print(sdax.__file__)")
    return where is not None and Path(where).resolve().is_relative_to(PROJECT)


def ensure_venv(name: str, python: str, packages: list[str], stamp: str) -> str:
    """Create (or refresh) CACHE/name with `packages`; returns its interpreter."""
    path = CACHE / name
    venv_python = path / "bin" / "python"
    marker = path / ".bench-stamp"
    if venv_python.exists() and marker.exists() and marker.read_text() == stamp:
        return str(venv_python)
    print(f"[bench] preparing {path} ({' '.join(packages)})", file=sys.stderr)
    if not venv_python.exists():
        subprocess.run([python, "-m", "venv", str(path)], check=True)
    pip = [str(venv_python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *packages], check=True, cwd="/", env=clean_env())
    marker.write_text(stamp)
    return str(venv_python)


def ours(python: str) -> str:
    """The interpreter that measures this project for `python`'s version."""
    version = version_of(python)
    if version_of(sys.executable) == version and _imports_project(sys.executable):
        return sys.executable
    pyproject = (PROJECT / "pyproject.toml").read_bytes()
    stamp = f"{PROJECT}\n{hashlib.sha256(pyproject).hexdigest()}"
    return ensure_venv(f"ours-{version}", python, ["-e", str(PROJECT), "uvloop"], stamp)


def ref(python: str) -> str | None:
    """The interpreter with sdax 0.7.2 for `python`'s version, or None if it can't be had."""
    version = version_of(python)
    try:
        return ensure_venv(f"ref-{version}", python, list(REF_PACKAGES), " ".join(REF_PACKAGES))
    except subprocess.CalledProcessError as error:
        print(f"[bench] sdax 0.7.2 unavailable for Python {version}: {error}", file=sys.stderr)
        return None
