"""Benchmark job A (RFM + geodemographic enrichment, scripts/bench/job_a.yaml) as plain DuckDB SQL.

The other side of `scripts/bench.sh` for JOBS=a. It computes exactly the rows segflow's
pipeline writes to customer_rfm/period=YEAR/ (checked by compare_outputs.py after the runs):

  * per customer, over the orders with customer, date and order id set and a date before the
    period end: last order date, recency_days = period end - last order date (days),
    frequency = count(DISTINCT order_id), monetary = sum(amount);
  * r/f/m scores = NTILE(5) over recency_days DESC / frequency ASC / monetary ASC, ties broken by
    customer id ASC (so R: fewer days = higher score); rfm_code = r || f || m;
  * the same segment rules as job_a.yaml, first match wins;
  * customers JOIN rfm, LEFT JOIN the geodemographic table on postal code, and an income band.

    python duckdb_job_a.py --data DIR --period 2025 --out DIR [--format csv|parquet]
                           [--threads N] [--memory-limit 4GB]
"""
import argparse
import datetime
import os
import sys
import time

import duckdb

sys.dont_write_bytecode = True  # no __pycache__ in scripts/bench for the import below
from duckdb_yearly import sources  # noqa: E402


def sql(data, fmt, year):
    end = datetime.date(year + 1, 1, 1)
    return f"""
{sources(data, fmt)}
CREATE TEMP TABLE customer_rfm AS
WITH measured AS (
  SELECT customer_id AS customer, max(order_date) AS last_order_date,
         CAST(DATE '{end}' - max(order_date) AS BIGINT) AS recency_days,
         count(DISTINCT order_id) AS frequency, sum(amount) AS monetary
  FROM orders
  WHERE customer_id IS NOT NULL AND order_date IS NOT NULL AND order_id IS NOT NULL
    AND order_date < DATE '{end}'
  GROUP BY customer_id),
scored AS (
  SELECT *,
    CAST(ntile(5) OVER (ORDER BY recency_days DESC NULLS LAST, customer ASC) AS INTEGER) AS r,
    CAST(ntile(5) OVER (ORDER BY frequency ASC NULLS FIRST, customer ASC) AS INTEGER) AS f,
    CAST(ntile(5) OVER (ORDER BY monetary ASC NULLS FIRST, customer ASC) AS INTEGER) AS m
  FROM measured),
rfm AS (
  SELECT customer AS customer_id, last_order_date, recency_days, frequency, monetary,
    r AS r_score, f AS f_score, m AS m_score, concat(r, f, m) AS rfm_code,
    CASE WHEN r >= 4 AND f >= 4 AND m >= 4 THEN 'Champions'
         WHEN f >= 4 AND m >= 3 THEN 'Loyal'
         WHEN r = 5 AND f <= 2 THEN 'New'
         WHEN r <= 2 AND f >= 3 THEN 'At risk'
         WHEN r = 1 AND f <= 2 THEN 'Lost'
         ELSE 'Others' END AS segment
  FROM scored)
SELECT c.customer_id, c.channel, c.birth_year, c.postal_code,
       g.region, g.geo_group, g.geo_type, g.median_income, g.households,
       r.last_order_date, r.recency_days, r.frequency, r.monetary,
       r.r_score, r.f_score, r.m_score, r.rfm_code, r.segment,
       CASE WHEN g.median_income IS NULL THEN 'unknown'
            WHEN g.median_income >= 450000 THEN 'high'
            WHEN g.median_income >= 300000 THEN 'middle'
            ELSE 'low' END AS income_band
FROM customers c
JOIN rfm r ON r.customer_id = c.customer_id
LEFT JOIN geodemographics g ON g.postal_code = c.postal_code;
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--period", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", default="csv", choices=["csv", "parquet"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 4GB (default: DuckDB's, 80%% of RAM)")
    args = ap.parse_args()
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads TO {args.threads}")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    con.execute(sql(args.data, args.format, args.period))
    target = f"{args.out}/customer_rfm/period={args.period}"
    os.makedirs(target, exist_ok=True)
    con.execute(f"COPY (SELECT * FROM customer_rfm ORDER BY customer_id) "
                f"TO '{target}/part-00000.parquet' (FORMAT parquet, COMPRESSION zstd)")
    print(f"duckdb {duckdb.__version__}: {time.perf_counter() - started:.3f} s")


if __name__ == "__main__":
    main()
