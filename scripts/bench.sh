#!/usr/bin/env bash
# Benchmark: segflow against a reference on the same generated data, side by side in one run.
# Not part of the test suite: it needs a release build, ~10 GB of disk and, at the default sizes,
# well over an hour (the lifetimes CLV fit alone takes ~40 s per million customers per run).
#
#   scripts/bench.sh                                   # everything below at its default
#   SIZES=100000 FORMATS=parquet JOBS=a RUNS=5 scripts/bench.sh
#   BIN=target/debug/segflow SIZES=20000 RUNS=1 WORK=/tmp/bench scripts/bench.sh   # quick check
#
# Settings (environment):
#   SIZES="1000000 10000000"   customers per data set (~ORDERS_PER_CUSTOMER orders each, default 10)
#   FORMATS="csv parquet"      export format of crm/customers.* and crm/orders.*
#   JOBS="a b"                 which jobs (below)
#   RUNS=3                     runs per engine, alternating segflow / reference; medians reported
#   PERIOD=2025                the year computed
#   WORK=bench-data            data (WORK/data-N-FORMAT/, generated once, kept) and outputs
#                              (WORK/out/JOB-N-FORMAT/{segflow,reference}/); results.md at the end
#   BIN=path                   use this segflow binary (and generate with it) instead of building
#                              target/release/segflow with `cargo build --release --locked`
#   MEMORY_LIMIT=4GB           optional: DuckDB's `SET memory_limit`, and segflow's memory pool
#                              limit. segflow has no command-line flag or variable for it; it is the
#                              pipeline setting `engine: { memory_limit: … }`, so the bench runs
#                              copies of the pipelines (WORK/pipelines/) with that section added.
#                              Unset (default): each engine's own default (segflow's pool 60% of
#                              RAM, DuckDB 80%).
#   CLV_IMPL=auto              job B's CLV fit: lifetimes | scipy | auto (lifetimes if it imports)
#
# Jobs and their references:
#   A  RFM + geodemographic enrichment. segflow: scripts/bench/job_a.yaml (`model: rfm`, NTILE(5)
#      scores, six segment rules, joined to customers and the postal-code reference table, one
#      Parquet output). Reference: scripts/bench/duckdb_job_a.py, the same job as one DuckDB SQL
#      script writing zstd Parquet. Exactly the same rows: compared after the runs, every column.
#   B  The shipped pipeline, pipelines/yearly_segmentation.yaml (RFM, Pareto tiers, value x
#      loyalty, k-means, BG/NBD + Gamma-Gamma CLV, profiles, four outputs). Reference total =
#      (1) the wall time of scripts/bench/duckdb_yearly.py, the SQL-expressible parts in DuckDB
#      (RFM, value tiers, the geodemographic join, customer_segments and segment_summary) plus
#      the per-customer CLV purchase summary (frequency, recency, T in weeks, mean repeat spend)
#      written to Parquet, + (2) the time scripts/bench/clv_reference.py takes for
#      BetaGeoFitter.fit + GammaGammaFitter.fit + predictions (P(alive), 52-week purchases,
#      12-month CLV) on that summary with `lifetimes` 0.11.3 (or the same likelihoods with
#      scipy.optimize.minimize when lifetimes cannot be installed). Not in the reference: the
#      value x loyalty matrix, k-means and the segment profile. customer_segments is compared
#      row by row; the CLV parameters of both are printed side by side.
#
# Times are whole-process wall times (start to exit, output written); peak RSS per process from
# os.wait4. Both engines read the same files and use all cores. Output: one line per run, the
# comparisons, then a markdown table (one row per job, size and format) for the README.
# Exits non-zero if any comparison fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# CUSTOMERS and FORMAT, the single-size settings of earlier versions, still work.
SIZES=${SIZES:-${CUSTOMERS:-1000000 10000000}}
FORMATS=${FORMATS:-${FORMAT:-csv parquet}}
JOBS=${JOBS:-a b}
RUNS=${RUNS:-3}
PERIOD=${PERIOD:-2025}
WORK=${WORK:-bench-data}
ORDERS_PER_CUSTOMER=${ORDERS_PER_CUSTOMER:-10}
MEMORY_LIMIT=${MEMORY_LIMIT:-}
CLV_IMPL=${CLV_IMPL:-auto}

py=.venv/bin/python
if ! "$py" -c "import duckdb, pyarrow" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi
case " $JOBS " in *" b "*)
  if ! "$py" -c "import lifetimes, scipy" 2>/dev/null; then
    echo "installing the CLV reference (lifetimes and its dependencies) into .venv" >&2
    .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-bench.txt ||
      .venv/bin/pip install --quiet --disable-pip-version-check numpy scipy
  fi;;
esac

if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --locked
  bin=target/release/segflow
fi
"$bin" --version

datasets=()
for customers in $SIZES; do
  for format in $FORMATS; do
    data="$WORK/data-$customers-$format"
    if [ ! -f "$data/.complete" ]; then
      rm -rf "$data"
      "$bin" generate --out "$data" --customers "$customers" --orders-per-customer "$ORDERS_PER_CUSTOMER" \
        --postal-areas 5000 --format "$format"
      touch "$data/.complete"
    fi
    du -sh "$data/crm"/* | sed 's/^/input: /'
    datasets+=(--dataset "$customers:$format:$data")
  done
done

exec "$py" scripts/bench/bench.py --bin "$bin" --work "$WORK" "${datasets[@]}" --jobs "$JOBS" \
  --runs "$RUNS" --period "$PERIOD" --memory-limit "$MEMORY_LIMIT" --clv-impl "$CLV_IMPL"
