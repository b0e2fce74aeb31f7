"""Run sdax 0.7.2's own test suite, unchanged, against this project.

    python -m compat.reference_tests [--python PY ...] [--timeout 20]

Fetches the 0.7.2 sdist with pip (once, into ~/.cache/sdax-compat), unpacks
only its tests/ and pytest.ini, and runs them with each given interpreter (a
venv with this project and pytest, pytest-asyncio and pytest-timeout
installed, as `make test` makes). 0.7.2's own code is never on the path: its
tests import whatever `sdax` the interpreter has. Prints pass/fail counts and
the failing tests per interpreter. A test that waits for a cleanup 0.7.2
would have cut short hangs here (cleanup is shielded), hence the per-test
timeout.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from compat.reference import CACHE, VERSION

SUITE = CACHE / f"tests-{VERSION}"


def unpacked_suite() -> Path:
    if (SUITE / "pytest.ini").exists():
        return SUITE
    downloads = CACHE / "sdist"
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    subprocess.check_call([*pip, f"sdax=={VERSION}", "-d", str(downloads)])
    [archive] = downloads.glob(f"sdax-{VERSION}.tar.gz")
    prefix = f"sdax-{VERSION}/"
    with tarfile.open(archive) as tar:
        wanted = [
            member
            for member in tar.getmembers()
            if member.name.startswith(prefix + "tests/") or member.name == prefix + "pytest.ini"
        ]
        for member in wanted:
            member.name = member.name.removeprefix(prefix)
        tar.extractall(SUITE, members=wanted, filter="data")
    return SUITE


def run(python: str, suite: Path, timeout: float) -> tuple[str, list[str]]:
    pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"]
    done = subprocess.run(
        [*pytest, "--timeout", str(timeout), "tests"],
        cwd=suite,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    failed = [line for line in lines if re.match(r"(FAILED|ERROR) tests/", line)]
    return (lines[-1] if lines else done.stderr.strip()), failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help="interpreter(s); default this one")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per test")
    args = parser.parse_args(argv)
    suite = unpacked_suite()
    for given in args.python or [sys.executable]:
        # Absolute, not resolved: a venv's python is a symlink to the base interpreter.
        python = os.path.abspath(given) if os.sep in given else given
        version = subprocess.check_output(
            [python, "-c", "import sys; print(sys.version.split()[0])"], text=True
        ).strip()
        summary, failed = run(python, suite, args.timeout)
        print(f"Python {version}: {summary}")
        for line in failed:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
