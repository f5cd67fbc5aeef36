"""The machine a benchmark ran on, for the page: cores, versions, load."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import stack


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        )
    except (OSError, StopIteration):
        pass
    server = subprocess.run(  # noqa: S603
        [str(stack.BIN / "temporal"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    wrk_version = "not installed"
    if shutil.which("wrk"):
        wrk_out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S603, S607
        wrk_version = (wrk_out.stdout + wrk_out.stderr).strip().splitlines()[0]
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": f"{int(Path('/proc/meminfo').read_text().split()[1]) // 1024} MiB",
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "server": server,
        "fastapi / uvicorn": f"{version('fastapi')} / {version('uvicorn')}",
        "pyjwt / cryptography": f"{version('pyjwt')} / {version('cryptography')}",
        "wrk": wrk_version,
        "os": f"{platform.system()} {platform.release()}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
