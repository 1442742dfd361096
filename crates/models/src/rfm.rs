//! RFM: recency, frequency and monetary scores per customer, and named segments.
//!
//! Definitions (DESIGN.md §3, written into the run manifest by the engine):
//! - only orders with a customer, dated before the reference date (and, with a lookback, on or
//!   after `reference - lookback`) count;
//! - R = days from the last order to the reference date (fewer days → higher score);
//! - F = distinct order ids, or distinct purchase days;
//! - M = sum of order amounts, or that sum divided by F (mean per order);
//! - `ntile`: equal-size buckets by rank, ties broken by customer id (ascending), so every run
//!   gives the same scores; `quantile`: cut points c_k = the value at rank ceil(k·N/bins) in
//!   ascending order, score = 1 + #{c_k < value} (for R: bins − #{c_k < days}), so equal
//!   values always share a score;
//! - the segment is the first rule whose `when` holds, over `r`, `f`, `m`, `recency_days`,
//!   `frequency` and `monetary`.

use chrono::{Days, Months, NaiveDate};
use segflow_spec::{
    FrequencyMeasure, LookbackUnit, MonetaryMeasure, RfmSpec, ScoreMethod, SegmentRule,
};

use crate::sql::{quote_ident, quote_literal};

/// The first day whose orders still count, or `None` without a lookback.
fn window_start(spec: &RfmSpec, reference: NaiveDate) -> Option<NaiveDate> {
    let lb = spec.lookback?;
    match lb.unit {
        LookbackUnit::Days => reference.checked_sub_days(Days::new(u64::from(lb.amount))),
        LookbackUnit::Months => reference.checked_sub_months(Months::new(lb.amount)),
        LookbackUnit::Years => {
            reference.checked_sub_months(Months::new(lb.amount.saturating_mul(12)))
        }
    }
}

fn date_literal(d: NaiveDate) -> String {
    format!("DATE '{d}'")
}

/// `ntile(bins) OVER (ORDER BY measure dir, customer)` as an INT score.
fn ntile(bins: u32, measure: &str, descending: bool) -> String {
    let dir = if descending { "DESC" } else { "ASC" };
    format!("CAST(ntile({bins}) OVER (ORDER BY {measure} {dir}, customer ASC) AS INT)")
}

/// CTEs holding the quantile cut points of one measure as columns `c1..c{bins-1}`.
fn cut_points_cte(name: &str, measure: &str, bins: u32) -> String {
    let picks: Vec<String> = (1..bins)
        .map(|k| format!("max(CASE WHEN rn = (n * {k} + {bins} - 1) / {bins} THEN v END) AS c{k}"))
        .collect();
    format!(
        "{name}_sorted AS (SELECT {measure} AS v, row_number() OVER (ORDER BY {measure}) AS rn, \
         count(*) OVER () AS n FROM measured),\n{name} AS (SELECT {} FROM {name}_sorted)",
        picks.join(", ")
    )
}

/// Number of cut points of `cuts` strictly below `measure`.
fn cuts_below(cuts: &str, measure: &str, bins: u32) -> String {
    (1..bins)
        .map(|k| format!("CASE WHEN {measure} > {cuts}.c{k} THEN 1 ELSE 0 END"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// `CASE WHEN (rule) THEN 'name' … ELSE 'catch-all' END`, or just the catch-all's name.
fn segment_case(rules: &[SegmentRule]) -> String {
    let whens: Vec<String> = rules
        .iter()
        .filter_map(|r| {
            r.when
                .as_ref()
                .map(|w| format!("WHEN ({w}) THEN {}", quote_literal(&r.name)))
        })
        .collect();
    let otherwise = rules
        .iter()
        .find(|r| r.when.is_none())
        .map_or_else(|| "NULL".to_string(), |r| quote_literal(&r.name));
    if whens.is_empty() {
        otherwise
    } else {
        format!("CASE {} ELSE {otherwise} END", whens.join(" "))
    }
}

/// The full scoring query over table `input`, with `reference` as the analysis date.
pub fn rfm_sql(spec: &RfmSpec, input: &str, reference: NaiveDate) -> String {
    let customer = quote_ident(&spec.customer);
    let date = quote_ident(&spec.date);
    let amount = quote_ident(&spec.amount);
    let order_id = spec
        .order_id
        .as_deref()
        .map_or_else(|| "NULL".to_string(), quote_ident);
    let mut filters = vec![
        format!("{customer} IS NOT NULL"),
        format!("{date} IS NOT NULL"),
        format!("CAST({date} AS DATE) < {}", date_literal(reference)),
    ];
    if let Some(start) = window_start(spec, reference) {
        filters.push(format!("CAST({date} AS DATE) >= {}", date_literal(start)));
    }
    let frequency = match spec.frequency {
        FrequencyMeasure::Orders => "count(DISTINCT order_id)",
        FrequencyMeasure::PurchaseDays => "count(DISTINCT order_date)",
    };
    let monetary = match spec.monetary {
        MonetaryMeasure::Sum => "sum(amount)",
        MonetaryMeasure::Mean => "sum(amount) / {frequency}",
    }
    .replace("{frequency}", frequency);
    let bins = spec.bins;
    let (cut_ctes, scores, joins) = match spec.method {
        ScoreMethod::Ntile => (
            String::new(),
            format!(
                "{} AS r_score, {} AS f_score, {} AS m_score",
                ntile(bins, "recency_days", true),
                ntile(bins, "frequency", false),
                ntile(bins, "monetary", false),
            ),
            String::new(),
        ),
        ScoreMethod::Quantile => (
            format!(
                ",\n{},\n{},\n{}",
                cut_points_cte("r_cuts", "recency_days", bins),
                cut_points_cte("f_cuts", "frequency", bins),
                cut_points_cte("m_cuts", "monetary", bins),
            ),
            format!(
                "CAST({bins} - ({}) AS INT) AS r_score, CAST(1 + {} AS INT) AS f_score, CAST(1 + {} AS INT) AS m_score",
                cuts_below("r_cuts", "recency_days", bins),
                cuts_below("f_cuts", "frequency", bins),
                cuts_below("m_cuts", "monetary", bins),
            ),
            " CROSS JOIN r_cuts CROSS JOIN f_cuts CROSS JOIN m_cuts".to_string(),
        ),
    };
    let segment = segment_case(&spec.segments);
    format!(
        "WITH base AS (
  SELECT {customer} AS customer, CAST({date} AS DATE) AS order_date, {order_id} AS order_id, {amount} AS amount
  FROM {input}
  WHERE {filters}
),
measured AS (
  SELECT customer, max(order_date) AS last_order_date,
    CAST(arrow_cast({reference}, 'Int32') AS BIGINT) - CAST(arrow_cast(max(order_date), 'Int32') AS BIGINT) AS recency_days,
    {frequency} AS frequency,
    {monetary} AS monetary
  FROM base GROUP BY customer
){cut_ctes},
scored AS (
  SELECT measured.*, {scores}
  FROM measured{joins}
),
named AS (
  SELECT scored.*, r_score AS r, f_score AS f, m_score AS m FROM scored
)
SELECT customer AS {customer}, last_order_date, recency_days, frequency, monetary,
  r_score, f_score, m_score,
  concat(CAST(r_score AS VARCHAR), CAST(f_score AS VARCHAR), CAST(m_score AS VARCHAR)) AS rfm_code,
  {segment} AS segment
FROM named",
        input = quote_ident(input),
        filters = filters.join(" AND "),
        reference = date_literal(reference),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use segflow_spec::{Lookback, Spanned};

    fn spec(lookback: Option<Lookback>) -> RfmSpec {
        RfmSpec {
            input: Spanned::new("orders".into(), Default::default()),
            customer: "customer_id".into(),
            date: "order_date".into(),
            order_id: Some("order_id".into()),
            amount: "amount".into(),
            frequency: FrequencyMeasure::Orders,
            monetary: MonetaryMeasure::Sum,
            bins: 5,
            method: ScoreMethod::Ntile,
            lookback,
            reference_date: None,
            segments: vec![],
        }
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn lookback_windows_count_back_from_the_reference_date() {
        let reference = d("2026-01-01");
        let years = spec(Some(Lookback {
            amount: 3,
            unit: LookbackUnit::Years,
        }));
        assert_eq!(window_start(&years, reference), Some(d("2023-01-01")));
        let days = spec(Some(Lookback {
            amount: 31,
            unit: LookbackUnit::Days,
        }));
        assert_eq!(window_start(&days, reference), Some(d("2025-12-01")));
        let months = spec(Some(Lookback {
            amount: 1,
            unit: LookbackUnit::Months,
        }));
        assert_eq!(
            window_start(&months, d("2025-03-31")),
            Some(d("2025-02-28"))
        );
        assert_eq!(window_start(&spec(None), reference), None);
    }

    #[test]
    fn quantile_cut_points_use_integer_ceiling_ranks() {
        let cte = cut_points_cte("f_cuts", "frequency", 3);
        assert!(cte.contains("rn = (n * 1 + 3 - 1) / 3 THEN v END) AS c1"));
        assert!(cte.contains("rn = (n * 2 + 3 - 1) / 3 THEN v END) AS c2"));
        assert!(!cte.contains("c3"));
    }
}
