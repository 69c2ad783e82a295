"""The clock-jump test hook: the services' wall clock moves by what a file says, the machine's
(time.time, which gRPC's deadlines use) and the monotonic clock do not; unset, nothing moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys, time
from services.common import clock
first, machine = clock.now(), time.time()
open(sys.argv[1], "w").write("-7200")
time.sleep(0.3)
print(json.dumps({"hooked": clock.hooked(), "first": first, "machine": machine, "after": clock.now(), "machine_after": time.time()}))
"""


def probe(tmp_path: Path, offset: str | None) -> dict:
    file = tmp_path / "offset"
    file.write_text(offset or "0")
    env = {k: v for k, v in os.environ.items() if k != "MESH_NODE_CLOCK_OFFSET_FILE"}
    if offset is not None:
        env["MESH_NODE_CLOCK_OFFSET_FILE"] = str(file)
    done = subprocess.run([sys.executable, "-c", PROBE, str(file)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_the_services_clock_follows_the_file_and_the_machines_does_not(tmp_path: Path) -> None:
    seen = probe(tmp_path, "3600")
    assert seen["hooked"] is True
    assert abs(seen["first"] - seen["machine"] - 3600) < 5  # an hour ahead
    assert abs(seen["after"] - seen["machine_after"] + 7200) < 5  # then two hours behind
    assert 0.25 < seen["machine_after"] - seen["machine"] < 30  # the machine's clock went on as ever


def test_without_the_variable_the_clock_is_the_machines(tmp_path: Path) -> None:
    seen = probe(tmp_path, None)
    assert seen["hooked"] is False and abs(seen["first"] - seen["machine"]) < 1 and abs(seen["after"] - seen["machine_after"]) < 1
