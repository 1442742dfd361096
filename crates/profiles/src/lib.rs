//! Segment profiles: who is in each segment and what they are worth, as SQL.
//!
//! One row per segment, or per segment × value of the `by` attribute, with:
//! - `customers`, `customer_share` (of all customers);
//! - `share_of_segment` (with `by`: the segment's customers having this value);
//! - `revenue`, `revenue_share` (of all revenue);
//! - with orders: `orders`, `orders_per_customer`, `avg_order_value` (order value / orders)
//!   and the product-category mix as `top_category` and its `top_category_share` of value;
//! - `margin`, `acquisition_cost` when the customer table has them;
//! - `index`, 100 = average: with `by`, how over-represented the value is in the segment
//!   (`share_of_segment` ÷ the value's share of all customers × 100); without `by`, revenue
//!   per customer against all customers' (× 100);
//! - with a market table: `households`, `penetration` = customers ÷ households, and
//!   `market_index` = the segment's penetration of this value ÷ its penetration of the whole
//!   market × 100.
//!
//! Rows come out ordered by segment, then value.

use chrono::NaiveDate;
use segflow_spec::{ProfileSpec, quote_ident as ident};

/// Money and counts are summed as this exact type and turned into DOUBLE only at the end:
/// a DOUBLE sum depends on the order rows arrive in, which depends on partitioning, and would
/// make reruns differ in the last bits. 28 integer digits hold any currency total.
const EXACT: &str = "DECIMAL(38,10)";

fn ratio(num: &str, den: &str) -> String {
    format!(
        "CASE WHEN CAST({den} AS DOUBLE) > 0 THEN CAST({num} AS DOUBLE) / CAST({den} AS DOUBLE) END"
    )
}

/// The profile query for orders dated in `[start, end)`.
pub fn profile_sql(spec: &ProfileSpec, start: NaiveDate, end: NaiveDate) -> String {
    let mut base_cols = vec![
        format!("{} AS __key", ident(&spec.key)),
        format!("CAST({} AS VARCHAR) AS __segment", ident(&spec.segment)),
        match &spec.by {
            Some(by) => format!("CAST({} AS VARCHAR) AS __by", ident(by)),
            None => "CAST('' AS VARCHAR) AS __by".into(),
        },
    ];
    let optional = |column: &Option<String>, name: &str| match column {
        Some(c) => format!("CAST({} AS {EXACT}) AS {name}", ident(c)),
        None => format!("CAST(NULL AS {EXACT}) AS {name}"),
    };
    base_cols.push(optional(&spec.revenue, "__revenue_column"));
    base_cols.push(optional(&spec.margin, "__margin"));
    base_cols.push(optional(&spec.acquisition_cost, "__acquisition_cost"));
    let mut ctes = vec![format!(
        "c AS (SELECT {} FROM {})",
        base_cols.join(", "),
        ident(&spec.customers.value)
    )];
    let window = format!(
        "CAST({date} AS DATE) >= DATE '{start}' AND CAST({date} AS DATE) < DATE '{end}'",
        date = spec
            .orders
            .as_ref()
            .map_or_else(String::new, |o| ident(&o.date))
    );
    if let Some(o) = &spec.orders {
        let count = o.order_id.as_ref().map_or_else(
            || "count(*)".to_string(),
            |id| format!("count(DISTINCT {})", ident(id)),
        );
        ctes.push(format!(
            "o AS (SELECT {customer} AS __key, {count} AS __orders, sum(CAST({amount} AS {EXACT})) AS __order_value FROM {table} WHERE {window} GROUP BY {customer})",
            customer = ident(&o.customer),
            amount = ident(&o.amount),
            table = ident(&o.table.value),
        ));
        ctes.push(
            "base AS (SELECT c.*, coalesce(o.__orders, 0) AS __orders, coalesce(o.__order_value, 0) AS __order_value, coalesce(c.__revenue_column, coalesce(o.__order_value, 0)) AS __revenue FROM c LEFT JOIN o ON o.__key = c.__key)".into(),
        );
        if let Some(category) = &o.category {
            ctes.push(format!(
                "mix AS (SELECT c.__segment, c.__by, CAST(x.{category} AS VARCHAR) AS category, sum(CAST(x.{amount} AS {EXACT})) AS value
  FROM {table} AS x JOIN c ON c.__key = x.{customer} WHERE {window_x} GROUP BY 1, 2, 3)",
                category = ident(category),
                amount = ident(&o.amount),
                table = ident(&o.table.value),
                customer = ident(&o.customer),
                window_x = window.replace(&ident(&o.date), &format!("x.{}", ident(&o.date))),
            ));
            ctes.push(
                "category_top AS (SELECT __segment, __by, category AS top_category, CAST(value AS DOUBLE) / CAST(sum(value) OVER (PARTITION BY __segment, __by) AS DOUBLE) AS top_category_share,
  row_number() OVER (PARTITION BY __segment, __by ORDER BY value DESC, category ASC) AS category_rank FROM mix)".into(),
            );
        }
    } else {
        ctes.push(
            format!("base AS (SELECT c.*, CAST(NULL AS BIGINT) AS __orders, CAST(NULL AS {EXACT}) AS __order_value, c.__revenue_column AS __revenue FROM c)"),
        );
    }
    ctes.push(
        "totals AS (SELECT count(*) AS all_customers, sum(__revenue) AS all_revenue FROM base)"
            .into(),
    );
    ctes.push(
        "seg AS (SELECT __segment, count(*) AS seg_customers FROM base GROUP BY __segment)".into(),
    );
    ctes.push("byv AS (SELECT __by, count(*) AS by_customers FROM base GROUP BY __by)".into());
    ctes.push(
        "cells AS (SELECT __segment, __by, count(*) AS customers, sum(__revenue) AS revenue, sum(__orders) AS orders, sum(__order_value) AS order_value, sum(__margin) AS margin, sum(__acquisition_cost) AS acquisition_cost FROM base GROUP BY __segment, __by)".into(),
    );
    let mut select = vec![format!("cells.__segment AS {}", ident(&spec.segment))];
    if let Some(by) = &spec.by {
        select.push(format!("cells.__by AS {}", ident(by)));
    }
    select.push("cells.customers".into());
    select.push(format!(
        "{} AS customer_share",
        ratio("cells.customers", "totals.all_customers")
    ));
    if spec.by.is_some() {
        select.push(format!(
            "{} AS share_of_segment",
            ratio("cells.customers", "seg.seg_customers")
        ));
    }
    select.push("CAST(cells.revenue AS DOUBLE) AS revenue".into());
    select.push(format!(
        "{} AS revenue_share",
        ratio("cells.revenue", "totals.all_revenue")
    ));
    if let Some(o) = &spec.orders {
        select.push("cells.orders".into());
        select.push(format!(
            "{} AS orders_per_customer",
            ratio("cells.orders", "cells.customers")
        ));
        select.push(format!(
            "{} AS avg_order_value",
            ratio("cells.order_value", "cells.orders")
        ));
        if o.category.is_some() {
            select.push("category_top.top_category".into());
            select.push("category_top.top_category_share".into());
        }
    }
    if spec.margin.is_some() {
        select.push("CAST(cells.margin AS DOUBLE) AS margin".into());
    }
    if spec.acquisition_cost.is_some() {
        select.push("CAST(cells.acquisition_cost AS DOUBLE) AS acquisition_cost".into());
    }
    let index = if spec.by.is_some() {
        format!(
            "100.0 * {} / {}",
            ratio("cells.customers", "seg.seg_customers"),
            ratio("byv.by_customers", "totals.all_customers")
        )
    } else {
        format!(
            "100.0 * {} / {}",
            ratio("cells.revenue", "cells.customers"),
            ratio("totals.all_revenue", "totals.all_customers")
        )
    };
    select.push(format!("{index} AS \"index\""));
    let mut joins = vec![
        "CROSS JOIN totals".to_string(),
        "JOIN seg ON (seg.__segment IS NOT DISTINCT FROM cells.__segment)".into(),
        "JOIN byv ON (byv.__by IS NOT DISTINCT FROM cells.__by)".into(),
    ];
    if spec.orders.as_ref().is_some_and(|o| o.category.is_some()) {
        joins.push("LEFT JOIN category_top ON (category_top.__segment IS NOT DISTINCT FROM cells.__segment) AND (category_top.__by IS NOT DISTINCT FROM cells.__by) AND category_top.category_rank = 1".into());
    }
    if let Some(m) = &spec.market {
        ctes.push(format!(
            "market AS (SELECT CAST({by} AS VARCHAR) AS __by, sum(CAST({h} AS {EXACT})) AS households FROM {table} GROUP BY 1)",
            by = ident(&m.by),
            h = ident(&m.households),
            table = ident(&m.table.value),
        ));
        ctes.push("market_total AS (SELECT sum(households) AS all_households FROM market)".into());
        joins.push("LEFT JOIN market ON market.__by = cells.__by CROSS JOIN market_total".into());
        select.push("CAST(market.households AS DOUBLE) AS households".into());
        select.push(format!(
            "{} AS penetration",
            ratio("cells.customers", "market.households")
        ));
        select.push(format!(
            "100.0 * {} / {} AS market_index",
            ratio("cells.customers", "market.households"),
            ratio("seg.seg_customers", "market_total.all_households")
        ));
    }
    format!(
        "WITH {}\nSELECT {}\nFROM cells {}\nORDER BY cells.__segment, cells.__by",
        ctes.join(",\n"),
        select.join(",\n  "),
        joins.join(" ")
    )
}
