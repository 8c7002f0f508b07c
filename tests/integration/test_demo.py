"""`detector demo` end to end in a subprocess: Ctrl-C stops it cleanly, no broker left behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_ctrl_c_stops_demo_and_its_broker(tmp_path) -> None:
    argv = [
        sys.executable,
        "-m",
        "detector.cli",
        "demo",
        "--streams",
        "3",
        "--epochs",
        "1",
        "--chunk",
        "300",
        "--rate",
        "100",
        "--duration",
        "120",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, broker = time.monotonic() + 90, []
        while not broker and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            broker = _children(proc.pid)
        assert broker, "the demo never started its broker"
        time.sleep(8)  # let readings flow through the worker
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "interrupted" in out and "readings" in out
    assert not any(_alive(pid) for pid in broker)
    assert (tmp_path / "report.png").is_file() and (tmp_path / "summary.json").is_file()
