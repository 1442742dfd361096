"""Runs segflow and the DuckDB reference alternately, RUNS times each, and reports medians,
the ratio and peak memory. Called by scripts/bench.sh."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def timed(cmd, env=None):
    """Wall time and the peak RSS (MiB) of that one child process (wait4 gives its own rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed:\n{out}\n{err}")
    return elapsed, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--format", default="csv")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--period", default="2025")
    ap.add_argument("--work", default="bench-data")
    args = ap.parse_args()
    seg_out = os.path.abspath(os.path.join(args.work, "out-segflow"))
    duck_out = os.path.abspath(os.path.join(args.work, "out-duckdb"))
    env = dict(os.environ, DATA_DIR=os.path.abspath(args.data), OUT_DIR=seg_out, DATA_FORMAT=args.format)
    seg_cmd = [args.bin, "run", os.path.join(ROOT, "pipelines/yearly_segmentation.yaml"), "--period", args.period]
    duck_cmd = [sys.executable, os.path.join(HERE, "duckdb_yearly.py"), "--data", os.path.abspath(args.data),
                "--period", args.period, "--out", duck_out, "--format", args.format]
    seg, duck = [], []
    rss = {"segflow": 0.0, "duckdb": 0.0}
    for i in range(args.runs):
        for name, cmd, times, out in (("segflow", seg_cmd, seg, seg_out), ("duckdb", duck_cmd, duck, duck_out)):
            shutil.rmtree(out, ignore_errors=True)
            elapsed, peak = timed(cmd, env if name == "segflow" else None)
            times.append(elapsed)
            rss[name] = max(rss[name], peak)
            print(f"run {i + 1}: {name:<8} {elapsed:7.2f} s  peak RSS {peak:7.0f} MiB", flush=True)
    ms, md = statistics.median(seg), statistics.median(duck)
    print(f"segflow median {ms:.2f} s (peak {rss['segflow']:.0f} MiB), "
          f"duckdb median {md:.2f} s (peak {rss['duckdb']:.0f} MiB), ratio segflow/duckdb {ms / md:.2f}")
    compare = subprocess.run([sys.executable, os.path.join(HERE, "compare_outputs.py"),
                              os.path.join(seg_out, "customer_segments"), os.path.join(duck_out, "customer_segments")],
                             capture_output=True, text=True)
    print(f"outputs: {compare.stdout.strip()}")


if __name__ == "__main__":
    main()
