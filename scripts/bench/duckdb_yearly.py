"""The shipped yearly_segmentation pipeline, written as plain DuckDB SQL.

Used two ways: as the reference implementation the end-to-end tests compare segflow's output
with (per customer, every column), and as the other side of `scripts/bench.sh`.

    python duckdb_yearly.py --data DIR --period 2025 --out DIR [--format csv|parquet] [--threads N]
                            [--memory-limit 4GB] [--clv-summary FILE.parquet]

`--clv-summary` also writes the per-customer purchase summary the pipeline's `clv` step fits
on (lifetimes' frequency / recency / T / monetary_value, in weeks), for clv_reference.py.
"""
import argparse
import datetime
import os
import time

import duckdb


def reader(data, fmt, table, columns):
    path = f"{data}/crm/{table}.{fmt}"
    if fmt == "parquet":
        cols = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in columns.items())
        return f"SELECT {cols} FROM read_parquet('{path}')"
    spec = ", ".join(f"'{c}': '{t}'" for c, t in columns.items())
    return f"SELECT * FROM read_csv('{path}', header = true, delim = ',', quote = '\"', columns = {{{spec}}})"


def sources(data, fmt):
    """The three sources of the shipped pipeline as DuckDB views, typed as it declares them."""
    customers = reader(data, fmt, "customers", {
        "customer_id": "VARCHAR", "email": "VARCHAR", "postal_code": "VARCHAR",
        "birth_year": "INTEGER", "signup_date": "DATE", "channel": "VARCHAR"})
    orders = reader(data, fmt, "orders", {
        "order_id": "BIGINT", "customer_id": "VARCHAR", "order_date": "DATE",
        "amount": "DECIMAL(12,2)", "category": "VARCHAR"})
    geo = (f"SELECT * FROM read_csv('{data}/reference/geodemographics.csv', header = true, columns = {{"
           "'postal_code': 'VARCHAR', 'region': 'VARCHAR', 'geo_group': 'VARCHAR', 'geo_type': 'VARCHAR', "
           "'median_income': 'BIGINT', 'households': 'BIGINT'})")
    return f"""CREATE TEMP VIEW customers AS {customers};
CREATE TEMP VIEW orders AS {orders};
CREATE TEMP VIEW geodemographics AS {geo};"""


def sql(data, fmt, year):
    start = datetime.date(year, 1, 1)
    end = datetime.date(year + 1, 1, 1)
    lookback = datetime.date(year - 2, 1, 1)  # 3 years back from the reference date `end`
    return f"""
{sources(data, fmt)}
CREATE TEMP TABLE rfm AS
WITH base AS (
  SELECT customer_id AS customer, order_date, order_id, amount FROM orders
  WHERE customer_id IS NOT NULL AND order_date IS NOT NULL
    AND order_date < DATE '{end}' AND order_date >= DATE '{lookback}'),
measured AS (
  SELECT customer, max(order_date) AS last_order_date,
         CAST(DATE '{end}' - max(order_date) AS BIGINT) AS recency_days,
         count(DISTINCT order_id) AS frequency, sum(amount) AS monetary
  FROM base GROUP BY customer),
scored AS (
  SELECT *,
    CAST(ntile(5) OVER (ORDER BY recency_days DESC, customer ASC) AS INTEGER) AS r_score,
    CAST(ntile(5) OVER (ORDER BY frequency ASC, customer ASC) AS INTEGER) AS f_score,
    CAST(ntile(5) OVER (ORDER BY monetary ASC, customer ASC) AS INTEGER) AS m_score
  FROM measured)
SELECT customer AS customer_id, last_order_date, recency_days, frequency, monetary,
  r_score, f_score, m_score, concat(r_score, f_score, m_score) AS rfm_code,
  CASE WHEN r_score >= 4 AND f_score >= 4 AND m_score >= 4 THEN 'Champions'
       WHEN f_score >= 4 THEN 'Loyal'
       WHEN r_score >= 4 THEN 'Promising'
       WHEN r_score <= 2 AND f_score >= 3 THEN 'At risk'
       WHEN r_score = 1 THEN 'Lost'
       ELSE 'Others' END AS segment
FROM scored;
CREATE TEMP TABLE value_tier AS
WITH annual AS (
  SELECT r.customer_id, coalesce(sum(o.amount), 0) AS revenue
  FROM rfm r LEFT JOIN orders o
    ON o.customer_id = r.customer_id AND o.order_date >= DATE '{start}' AND o.order_date < DATE '{end}'
  GROUP BY r.customer_id),
ranked AS (
  SELECT customer_id, revenue,
    row_number() OVER w AS value_rank,
    coalesce(sum(revenue) OVER (ORDER BY revenue DESC, customer_id ASC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before,
    sum(revenue) OVER () AS total
  FROM annual WINDOW w AS (ORDER BY revenue DESC, customer_id ASC))
SELECT customer_id, revenue, value_rank,
  CASE WHEN total > 0 AND CAST(before AS DOUBLE) / CAST(total AS DOUBLE) < 0.8 THEN 'A'
       WHEN total > 0 AND CAST(before AS DOUBLE) / CAST(total AS DOUBLE) < 0.95 THEN 'B'
       ELSE 'C' END AS tier
FROM ranked;
CREATE TEMP TABLE customer_segments AS
SELECT c.customer_id, c.postal_code, g.region, g.geo_group, g.geo_type, c.channel,
       r.last_order_date, r.recency_days, r.frequency, r.monetary,
       r.r_score, r.f_score, r.m_score, r.rfm_code, r.segment AS rfm_segment,
       v.revenue AS period_revenue, v.value_rank, v.tier AS value_tier
FROM customers c
JOIN rfm r ON r.customer_id = c.customer_id
JOIN value_tier v ON v.customer_id = c.customer_id
LEFT JOIN geodemographics g ON g.postal_code = c.postal_code;
"""


def clv_summary_sql(year):
    """Per customer, as the pipeline's `clv` step (time_unit: weeks) summarizes the orders up to
    the observation end (the period's last day): orders summed per day (one purchase occasion
    per day); frequency = purchase days - 1; recency = first to last purchase day and T = first
    purchase day to the observation end, in weeks; monetary_value = mean spend of the repeat
    purchase days (the first excluded), 0 without repeats (as lifetimes' summaries have it);
    historical_value = total spend; inactive_days = observation end - last purchase day."""
    obs_end = datetime.date(year, 12, 31)
    return f"""
WITH days AS (
  SELECT customer_id AS customer, order_date AS day, CAST(sum(amount) AS DOUBLE) AS spend
  FROM orders
  WHERE customer_id IS NOT NULL AND order_date IS NOT NULL AND order_date <= DATE '{obs_end}'
  GROUP BY 1, 2),
per_customer AS (
  SELECT customer, min(day) AS first_day, max(day) AS last_day, count(*) AS purchase_days,
         sum(spend) AS total_spend
  FROM days GROUP BY customer)
SELECT p.customer AS customer_id,
  CAST(p.purchase_days - 1 AS DOUBLE) AS frequency,
  CAST(p.last_day - p.first_day AS DOUBLE) / 7.0 AS recency,
  CAST(DATE '{obs_end}' - p.first_day AS DOUBLE) / 7.0 AS T,
  CASE WHEN p.purchase_days > 1 THEN (p.total_spend - d.spend) / CAST(p.purchase_days - 1 AS DOUBLE)
       ELSE 0.0 END AS monetary_value,
  p.total_spend AS historical_value,
  CAST(DATE '{obs_end}' - p.last_day AS DOUBLE) AS inactive_days
FROM per_customer p JOIN days d ON d.customer = p.customer AND d.day = p.first_day
ORDER BY p.customer"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--period", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", default="csv", choices=["csv", "parquet"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 4GB (default: DuckDB's, 80%% of RAM)")
    ap.add_argument("--clv-summary", help="also write the CLV purchase summary to this Parquet file")
    args = ap.parse_args()
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads TO {args.threads}")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    con.execute(sql(args.data, args.format, args.period))
    if args.clv_summary:
        os.makedirs(os.path.dirname(os.path.abspath(args.clv_summary)), exist_ok=True)
        con.execute(f"COPY ({clv_summary_sql(args.period)}) TO '{args.clv_summary}' (FORMAT parquet, COMPRESSION zstd)")
    for table, query in [
        ("customer_segments", "SELECT * FROM customer_segments ORDER BY customer_id"),
        ("segment_summary", """SELECT rfm_segment, value_tier, count(*) AS customers,
             sum(period_revenue) AS period_revenue, avg(frequency) AS avg_frequency,
             avg(recency_days) AS avg_recency_days
           FROM customer_segments GROUP BY ALL ORDER BY ALL"""),
    ]:
        target = f"{args.out}/{table}/period={args.period}"
        os.makedirs(target, exist_ok=True)
        con.execute(f"COPY ({query}) TO '{target}/part-00000.parquet' (FORMAT parquet, COMPRESSION zstd)")
    print(f"duckdb {duckdb.__version__}: {time.perf_counter() - started:.3f} s")


if __name__ == "__main__":
    main()
