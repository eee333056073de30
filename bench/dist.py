"""Size and start-up time of the single executable against the source checkout,
measured in one run (ratios are what to read on a shared machine).

    python bench/dist.py [--exe dist/desk] [--rounds 3]

Start-up: ``--help`` (the one-file executable unpacks itself each time) and
``run`` until /healthz answers, on a fresh data folder, for ``dist/desk`` and
for ``python app.py``."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.serverproc import SERVER_ENV  # noqa: E402
from tests.serverproc import DeskServer  # noqa: E402


def timed(cmd: list[str], env: dict) -> float:
    import subprocess
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def ready_time(program: list[str], folder: Path) -> float:
    server = DeskServer(folder / "instance", ["--no-scheduler", "--workers", "1"],
                        program=program, log_dir=folder)
    start = time.perf_counter()
    server.start(timeout=120)
    took = time.perf_counter() - start
    server.stop()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exe", default=str(ROOT / "dist" / "desk"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    exe = Path(args.exe).resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env.update(SERVER_ENV)
    programs = {"dist/desk": [str(exe)], "python app.py": [sys.executable, "app.py"]}
    print(f"size of {exe.name}: {exe.stat().st_size / 2**20:.1f} MiB; load average {os.getloadavg()}")
    for name, program in programs.items():
        helps = [timed([*program, "--help"], env) for _ in range(args.rounds)]
        readies = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                readies.append(ready_time(program, Path(tmp)))
        print(f"{name:<14} --help median {statistics.median(helps):.2f} s; "
              f"run to /healthz (fresh folder, migrations) median {statistics.median(readies):.2f} s")


if __name__ == "__main__":
    main()
