"""Netflix-scale prepare: generate synthetic Netflix Prize raw files, time `deeprec prepare`.

Generates 480,189 users x 17,770 items x 100,480,507 ratings as training_set/mv_*.txt in a
temporary folder outside the repository, then runs

    python -m deeprec prepare RAW --format netflix --split netflix-full --out DS --quiet

as a child process and records its wall time and peak resident memory (from os.wait4), and
the same for the generator. Results go to docs/results/prepare_netflix_scale.md. The big
files are deleted afterwards unless --keep.

Run it under the shared lock:  flock /tmp/deeprec-heavy.lock python benchmarks/prepare_netflix_scale.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import machine

ROOT = Path(__file__).resolve().parents[1]


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str, int]:
    """(wall seconds, peak RSS in GiB, stdout, exit status) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024**2, output, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/deeprec-netflix-scale"))
    parser.add_argument("--preset", default="netflix")
    parser.add_argument("--layout", default="netflix", help="synth --format (netflix = mv_ files)")
    parser.add_argument("--split", default="netflix-full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "docs" / "results" / "prepare_netflix_scale.md"
    )
    parser.add_argument("--note", default="shared with other work (other helpers' tests ran)")
    args = parser.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    raw, ds = args.work / "raw", args.work / "ds"
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    py = [sys.executable, "-m", "deeprec"]
    synth_cmd = [*py, "synth", "--preset", args.preset, "--format", args.layout]
    synth_cmd += ["--seed", str(args.seed), "--out", str(raw), "--quiet"]
    prep_cmd = [*py, "prepare", str(raw), "--format", "netflix", "--split", args.split]
    prep_cmd += ["--seed", str(args.seed), "--out", str(ds), "--quiet"]
    try:
        print("+", " ".join(synth_cmd), flush=True)
        s_wall, s_rss, s_out, rc = run_measured(synth_cmd, env)
        print(s_out, f"synth: {s_wall:.1f} s, peak {s_rss:.2f} GiB", flush=True)
        if rc:
            return rc
        files = list(raw.rglob("*.txt"))
        raw_bytes = sum(p.stat().st_size for p in files)
        print("+", " ".join(prep_cmd), flush=True)
        p_wall, p_rss, p_out, rc = run_measured(prep_cmd, env)
        print(p_out, f"prepare: {p_wall:.1f} s, peak {p_rss:.2f} GiB", flush=True)
        if rc:
            return rc
        ds_bytes = sum(p.stat().st_size for p in ds.rglob("*") if p.is_file())
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    facts = machine()
    rel = lambda c: " ".join(Path(x).name if x == sys.executable else x for x in c)  # noqa: E731
    text = f"""# Netflix-scale `deeprec prepare`

Measured by `benchmarks/prepare_netflix_scale.py` ({time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}).

Command (run under the shared lock):

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/prepare_netflix_scale.py

Machine: {facts}; {args.note}. Wall times on a shared machine are upper bounds.

Data: synthetic Netflix-scale raw files from `deeprec synth --preset {args.preset} --format
{args.layout} --seed {args.seed}`: {len(files):,} files, {raw_bytes / 1e9:.2f} GB of text.

| step | command | wall time | peak RSS |
|---|---|---:|---:|
| generate raw files | `{rel(synth_cmd[1:]).replace(str(args.work), "WORK")}` | {s_wall:.1f} s | {s_rss:.2f} GiB |
| **prepare** | `{rel(prep_cmd[1:]).replace(str(args.work), "WORK")}` | **{p_wall:.1f} s** | **{p_rss:.2f} GiB** |

Targets for prepare: under 120 s and under 8 GB peak. The prepared directory took
{ds_bytes / 1e9:.2f} GB. Peak RSS is the child's `ru_maxrss` (os.wait4).

Generator output:

```
{s_out.strip()}
```

Prepare output (Table-1 statistics of the split):

```
{p_out.strip()}
```
"""
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
