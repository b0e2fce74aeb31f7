"""The reference: sdax 0.7.2 installed in a scratch virtual environment.

0.7.2 is only ever imported in that environment's own interpreter (a child
process): it is measured and compared, never imported next to this project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

VERSION = "0.7.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sdax-compat"
REPO = Path(__file__).resolve().parent.parent


def reference_python(python: str = sys.executable) -> Path:
    """The interpreter of a venv with sdax 0.7.2, made on first use (one per Python version).

    `SDAX_REFERENCE_PYTHON` names an existing one instead.
    """
    named = os.environ.get("SDAX_REFERENCE_PYTHON")
    if named:
        return Path(named)
    version = subprocess.check_output(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], text=True
    ).strip()
    venv = CACHE / f"ref-{version}"
    interpreter = venv / "bin" / "python"
    if not _has_reference(interpreter):
        subprocess.check_call([python, "-m", "venv", "--clear", str(venv)])
        subprocess.check_call(
            [str(interpreter), "-m", "pip", "install", "-q", f"sdax=={VERSION}"],
            stdout=subprocess.DEVNULL,
        )
    return interpreter


def _has_reference(interpreter: Path) -> bool:
    if not interpreter.exists():
        return False
    probe = subprocess.run(
        [str(interpreter), "-I", "-c", "import sdax; print(sdax.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == VERSION


def run_json(interpreter: Path | str, script: Path, payload: object, ours: bool) -> list[Any]:
    """Run `script` under `interpreter`, JSON in on stdin and out on stdout.

    The reference runs isolated (-I, from /), so nothing of this repository is on its
    path; this project runs with the repository first on its path.
    """
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if ours:
        command = [str(interpreter), str(script)]
        env["PYTHONPATH"] = str(REPO)
    else:
        command = [str(interpreter), "-I", str(script)]
    done = subprocess.run(
        command,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} failed under {interpreter}:\n{done.stderr}")
    answer = json.loads(done.stdout)
    if not isinstance(answer, list):
        raise RuntimeError(f"{script.name} printed {type(answer).__name__}, not a list")
    return answer
