#!/usr/bin/env bash
# Benchmark: the shipped yearly pipeline on generated data, segflow vs the same SQL in DuckDB.
# Not part of the test suite (it needs a release build and a few GB of disk).
#
#   scripts/bench.sh                                  # 1M customers, ~10M orders, CSV, 3 runs
#   CUSTOMERS=100000 RUNS=5 FORMAT=parquet scripts/bench.sh
#
# Prints each run, then both medians and the ratio segflow / DuckDB. Both engines read the same
# files, use all cores and write zstd Parquet; the outputs are compared row by row afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
CUSTOMERS=${CUSTOMERS:-1000000}
ORDERS_PER_CUSTOMER=${ORDERS_PER_CUSTOMER:-10}
FORMAT=${FORMAT:-csv}
RUNS=${RUNS:-3}
PERIOD=${PERIOD:-2025}
WORK=${WORK:-bench-data}

if ! .venv/bin/python -c "import duckdb, pyarrow" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi
cargo build --release --locked
bin=target/release/segflow
data="$WORK/data-$CUSTOMERS-$FORMAT"
if [ ! -f "$data/crm/orders.$FORMAT" ]; then
  "$bin" generate --out "$data" --customers "$CUSTOMERS" --orders-per-customer "$ORDERS_PER_CUSTOMER" \
    --postal-areas 5000 --format "$FORMAT"
fi
du -sh "$data/crm"/* | sed 's/^/input: /'
exec .venv/bin/python scripts/bench/bench.py --bin "$bin" --data "$data" --format "$FORMAT" \
  --runs "$RUNS" --period "$PERIOD" --work "$WORK"
