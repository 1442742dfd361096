"""Runs segflow and its reference side by side, RUNS times each, alternately, per job and data
set; prints every run, checks the outputs, then one markdown table row per (job, size, format).
Called by scripts/bench.sh, which generates the data and says what the jobs and references are.

    python bench.py --bin BIN --work DIR --dataset CUSTOMERS:FORMAT:DATA_DIR [--dataset ...]
                    [--jobs a,b] [--runs 3] [--period 2025] [--memory-limit 4GB] [--clv-impl auto]

Times are wall times of whole processes (start to exit), peak RSS is each process's own
(os.wait4). Job B's reference is two processes, DuckDB then the CLV fit: its time is the DuckDB
process's wall time plus the CLV fit + predictions (as clv_reference.py times them), its peak
RSS the larger of the two.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PIPELINES = {"a": os.path.join(HERE, "job_a.yaml"), "b": os.path.join(ROOT, "pipelines/yearly_segmentation.yaml")}
JOB_NAMES = {"a": "A: RFM + geodemographics", "b": "B: yearly pipeline (DuckDB + CLV fit)"}
COMPARED = {"a": "customer_rfm", "b": "customer_segments"}


def timed(cmd, env=None):
    """Wall time, peak RSS (bytes) of that one child process (wait4 gives its own rusage), stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Drained by threads so a chatty child never blocks on a full pipe before wait4 sees it exit.
    chunks = {"out": b"", "err": b""}

    def drain(name, pipe):
        chunks[name] = pipe.read()

    readers = [threading.Thread(target=drain, args=(n, p)) for n, p in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = chunks["out"].decode(errors="replace"), chunks["err"].decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"FAILED (exit {proc.returncode}): {' '.join(cmd)}\n{out}\n{err}")
    return elapsed, usage.ru_maxrss * 1024, out


def pipeline_file(job, work, memory_limit):
    """The job's pipeline; with a memory limit, a copy of it with `engine: { memory_limit }`
    (relative paths in it do not matter: DATA_DIR and OUT_DIR are absolute)."""
    if not memory_limit:
        return PIPELINES[job]
    os.makedirs(os.path.join(work, "pipelines"), exist_ok=True)
    copy = os.path.join(work, "pipelines", os.path.basename(PIPELINES[job]))
    with open(PIPELINES[job]) as f:
        text = f.read()
    if "\nengine:" in text:
        sys.exit(f"{PIPELINES[job]} already has an engine: section; set its memory_limit there")
    with open(copy, "w") as f:
        f.write(text.rstrip("\n") + f"\n\nengine:\n  memory_limit: \"{memory_limit}\"\n")
    return copy


def manifest_rows(out_dir):
    """Rows read per source, from the newest run manifest segflow wrote."""
    manifests = sorted(glob.glob(os.path.join(out_dir, "runs", "*", "manifest.json")))
    if not manifests:
        return {}
    with open(manifests[-1]) as f:
        return {i["source"]: i["rows"] for i in json.load(f).get("inputs", [])}


def input_size(data, fmt):
    """crm/customers + crm/orders on disk, e.g. `4.12 GB` or `9.3 MB`."""
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(data, "crm", f"*.{fmt}")))
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def run_job(job, customers, fmt, data, args, py):
    work = os.path.abspath(os.path.join(args.work, "out", f"{job}-{customers}-{fmt}"))
    seg_out, ref_out = os.path.join(work, "segflow"), os.path.join(work, "reference")
    pipeline = pipeline_file(job, os.path.abspath(args.work), args.memory_limit)
    env = dict(os.environ, DATA_DIR=os.path.abspath(data), OUT_DIR=seg_out, DATA_FORMAT=fmt)
    seg_cmd = [args.bin, "run", pipeline, "--period", args.period]
    limit = ["--memory-limit", args.memory_limit] if args.memory_limit else []
    clv_summary = os.path.join(ref_out, "clv_summary.parquet")
    script = "duckdb_job_a.py" if job == "a" else "duckdb_yearly.py"
    duck_cmd = [py, os.path.join(HERE, script), "--data", os.path.abspath(data), "--period", args.period,
                "--out", ref_out, "--format", fmt, *limit]
    if job == "b":
        duck_cmd += ["--clv-summary", clv_summary]
    clv_cmd = [py, os.path.join(HERE, "clv_reference.py"), "--summary", clv_summary,
               "--out", os.path.join(ref_out, "clv_predictions.parquet"), "--impl", args.clv_impl]
    seg_times, ref_times, seg_rss, ref_rss, clv_info = [], [], 0, 0, None
    label = f"job {job} {customers:>9} {fmt:<7}"
    for i in range(args.runs):
        shutil.rmtree(seg_out, ignore_errors=True)
        elapsed, peak, _ = timed(seg_cmd, env)
        seg_times.append(elapsed)
        seg_rss = max(seg_rss, peak)
        print(f"run {i + 1}/{args.runs}  {label}  segflow    {elapsed:8.2f} s  peak RSS {peak / 2**20:7.0f} MiB",
              flush=True)
        shutil.rmtree(ref_out, ignore_errors=True)
        elapsed, peak, _ = timed(duck_cmd)
        detail = ""
        if job == "b":
            clv_wall, clv_peak, out = timed(clv_cmd)
            clv_info = json.loads(out.strip().splitlines()[-1])
            detail = (f"  (duckdb {elapsed:.2f} s + CLV fit/predict {clv_info['fit_predict_seconds']:.2f} s "
                      f"[{clv_info['impl']}; CLV process {clv_wall:.2f} s, {clv_peak / 2**20:.0f} MiB])")
            elapsed += clv_info["fit_predict_seconds"]
            peak = max(peak, clv_peak)
        ref_times.append(elapsed)
        ref_rss = max(ref_rss, peak)
        print(f"run {i + 1}/{args.runs}  {label}  reference  {elapsed:8.2f} s  peak RSS {peak / 2**20:7.0f} MiB{detail}",
              flush=True)
    compare = subprocess.run([py, os.path.join(HERE, "compare_outputs.py"), os.path.join(seg_out, COMPARED[job]),
                              os.path.join(ref_out, COMPARED[job])], capture_output=True, text=True)
    equal = compare.returncode == 0 and compare.stdout.startswith("equal ") and compare.stdout.split()[1] != "0"
    verdict = compare.stdout.strip() or compare.stderr.strip()
    print(f"{label}  {COMPARED[job]}: {verdict if equal else 'OUTPUTS DIFFER: ' + verdict}", flush=True)
    if clv_info:
        seg_model = os.path.join(seg_out, "models", "clv", f"period={args.period}", "model.json")
        if os.path.exists(seg_model):
            with open(seg_model) as f:
                p = json.load(f)["parameters"]
            fmt_params = lambda d: " ".join(f"{k}={d[k]:.5g}" for k in sorted(d))  # noqa: E731
            print(f"{label}  CLV parameters  segflow: {fmt_params(p['bgnbd'])} | {fmt_params(p['gamma_gamma'])}")
            print(f"{label}  CLV parameters  {clv_info['impl']:<8}: {fmt_params(clv_info['bgnbd'])} | "
                  f"{fmt_params(clv_info['gamma_gamma'])}", flush=True)
    rows = manifest_rows(seg_out)
    ms, mr = statistics.median(seg_times), statistics.median(ref_times)
    size = input_size(data, fmt)
    row = (f"| {JOB_NAMES[job]} | {rows.get('customers', customers):,} / {rows.get('orders', 0):,} | "
           f"{fmt.upper()}, {size} | {ms:.2f} | {mr:.2f} | {ms / mr:.2f} | "
           f"{seg_rss / 1e9:.2f} / {ref_rss / 1e9:.2f} |")
    if not equal:
        row += " OUTPUTS DIFFER"
    return row, equal


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", default="bench-data")
    ap.add_argument("--dataset", action="append", required=True, help="CUSTOMERS:FORMAT:DIR")
    ap.add_argument("--jobs", default="a,b")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--period", default="2025")
    ap.add_argument("--memory-limit", default="")
    ap.add_argument("--clv-impl", default="auto", choices=["auto", "lifetimes", "scipy"])
    args = ap.parse_args()
    jobs = [j for j in args.jobs.replace(",", " ").split() if j]
    for j in jobs:
        if j not in PIPELINES:
            sys.exit(f"unknown job `{j}` (a or b)")
    table, failed = [], []
    for dataset in args.dataset:
        customers, fmt, data = dataset.split(":", 2)
        for job in jobs:
            row, equal = run_job(job, int(customers), fmt, data, args, sys.executable)
            table.append(row)
            if not equal:
                failed.append(f"job {job}, {customers} customers, {fmt}")
    header = ["| job | customers / orders | input | segflow median s | DuckDB median s | ratio | "
              "peak RSS segflow / DuckDB GB |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    text = "\n".join(header + table)
    print(f"\nsegflow: {args.bin}; {args.runs} runs each, medians; ratio = segflow / reference; "
          f"memory limit: {args.memory_limit or 'each engine default'}\n")
    print(text)
    with open(os.path.join(args.work, "results.md"), "w") as f:
        f.write(text + "\n")
    if failed:
        sys.exit("OUTPUTS DIFFER: " + "; ".join(failed))


if __name__ == "__main__":
    main()
