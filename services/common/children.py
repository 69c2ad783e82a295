"""What every child process we start shares: it ends when its parent does.

Owns the argv wrapper only; starting, watching and stopping children belong to their owners
(the CLI's node.py for the services, the runner's supervisor.py for llama.cpp's servers).
"""

from __future__ import annotations

import shutil
import sys


def die_with_parent(argv: list[str], signal_name: str = "KILL") -> list[str]:
    """On Linux, wrap argv so the child gets `signal_name` if its parent dies without stopping it."""
    setpriv = shutil.which("setpriv")
    if sys.platform.startswith("linux") and setpriv:
        return [setpriv, "--pdeathsig", signal_name, "--", *argv]
    return argv
