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
        "__c AS (SELECT {} FROM {})",
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
            "__o AS (SELECT {customer} AS __key, {count} AS __orders, sum(CAST({amount} AS {EXACT})) AS __order_value FROM {table} WHERE {window} GROUP BY {customer})",
            customer = ident(&o.customer),
            amount = ident(&o.amount),
            table = ident(&o.table.value),
        ));
        ctes.push(
            "__base AS (SELECT __c.*, coalesce(__o.__orders, 0) AS __orders, coalesce(__o.__order_value, 0) AS __order_value, coalesce(__c.__revenue_column, coalesce(__o.__order_value, 0)) AS __revenue FROM __c LEFT JOIN __o ON __o.__key = __c.__key)".into(),
        );
        if let Some(category) = &o.category {
            ctes.push(format!(
                "__mix AS (SELECT __c.__segment, __c.__by, CAST(x.{category} AS VARCHAR) AS category, sum(CAST(x.{amount} AS {EXACT})) AS value
  FROM {table} AS x JOIN __c ON __c.__key = x.{customer} WHERE {window_x} GROUP BY 1, 2, 3)",
                category = ident(category),
                amount = ident(&o.amount),
                table = ident(&o.table.value),
                customer = ident(&o.customer),
                window_x = window.replace(&ident(&o.date), &format!("x.{}", ident(&o.date))),
            ));
            ctes.push(
                "__category_top AS (SELECT __segment, __by, category AS top_category, CAST(value AS DOUBLE) / CAST(sum(value) OVER (PARTITION BY __segment, __by) AS DOUBLE) AS top_category_share,
  row_number() OVER (PARTITION BY __segment, __by ORDER BY value DESC, category ASC) AS category_rank FROM __mix)".into(),
            );
        }
    } else {
        ctes.push(
            format!("__base AS (SELECT __c.*, CAST(NULL AS BIGINT) AS __orders, CAST(NULL AS {EXACT}) AS __order_value, __c.__revenue_column AS __revenue FROM __c)"),
        );
    }
    ctes.push(
        "__totals AS (SELECT count(*) AS all_customers, sum(__revenue) AS all_revenue FROM __base)"
            .into(),
    );
    ctes.push(
        "__seg AS (SELECT __segment, count(*) AS seg_customers FROM __base GROUP BY __segment)"
            .into(),
    );
    ctes.push("__byv AS (SELECT __by, count(*) AS by_customers FROM __base GROUP BY __by)".into());
    ctes.push(
        "__cells AS (SELECT __segment, __by, count(*) AS customers, sum(__revenue) AS revenue, sum(__orders) AS orders, sum(__order_value) AS order_value, sum(__margin) AS margin, sum(__acquisition_cost) AS acquisition_cost FROM __base GROUP BY __segment, __by)".into(),
    );
    let mut select = vec![format!("__cells.__segment AS {}", ident(&spec.segment))];
    if let Some(by) = &spec.by {
        select.push(format!("__cells.__by AS {}", ident(by)));
    }
    select.push("__cells.customers".into());
    select.push(format!(
        "{} AS customer_share",
        ratio("__cells.customers", "__totals.all_customers")
    ));
    if spec.by.is_some() {
        select.push(format!(
            "{} AS share_of_segment",
            ratio("__cells.customers", "__seg.seg_customers")
        ));
    }
    select.push("CAST(__cells.revenue AS DOUBLE) AS revenue".into());
    select.push(format!(
        "{} AS revenue_share",
        ratio("__cells.revenue", "__totals.all_revenue")
    ));
    if let Some(o) = &spec.orders {
        select.push("__cells.orders".into());
        select.push(format!(
            "{} AS orders_per_customer",
            ratio("__cells.orders", "__cells.customers")
        ));
        select.push(format!(
            "{} AS avg_order_value",
            ratio("__cells.order_value", "__cells.orders")
        ));
        if o.category.is_some() {
            select.push("__category_top.top_category".into());
            select.push("__category_top.top_category_share".into());
        }
    }
    if spec.margin.is_some() {
        select.push("CAST(__cells.margin AS DOUBLE) AS margin".into());
    }
    if spec.acquisition_cost.is_some() {
        select.push("CAST(__cells.acquisition_cost AS DOUBLE) AS acquisition_cost".into());
    }
    let index = if spec.by.is_some() {
        format!(
            "100.0 * {} / {}",
            ratio("__cells.customers", "__seg.seg_customers"),
            ratio("__byv.by_customers", "__totals.all_customers")
        )
    } else {
        format!(
            "100.0 * {} / {}",
            ratio("__cells.revenue", "__cells.customers"),
            ratio("__totals.all_revenue", "__totals.all_customers")
        )
    };
    select.push(format!("{index} AS \"index\""));
    let mut joins = vec![
        "CROSS JOIN __totals".to_string(),
        "JOIN __seg ON (__seg.__segment IS NOT DISTINCT FROM __cells.__segment)".into(),
        "JOIN __byv ON (__byv.__by IS NOT DISTINCT FROM __cells.__by)".into(),
    ];
    if spec.orders.as_ref().is_some_and(|o| o.category.is_some()) {
        joins.push("LEFT JOIN __category_top ON (__category_top.__segment IS NOT DISTINCT FROM __cells.__segment) AND (__category_top.__by IS NOT DISTINCT FROM __cells.__by) AND __category_top.category_rank = 1".into());
    }
    if let Some(m) = &spec.market {
        ctes.push(format!(
            "__market AS (SELECT CAST({by} AS VARCHAR) AS __by, sum(CAST({h} AS {EXACT})) AS households FROM {table} GROUP BY 1)",
            by = ident(&m.by),
            h = ident(&m.households),
            table = ident(&m.table.value),
        ));
        ctes.push(
            "__market_total AS (SELECT sum(households) AS all_households FROM __market)".into(),
        );
        joins.push(
            "LEFT JOIN __market ON __market.__by = __cells.__by CROSS JOIN __market_total".into(),
        );
        select.push("CAST(__market.households AS DOUBLE) AS households".into());
        select.push(format!(
            "{} AS penetration",
            ratio("__cells.customers", "__market.households")
        ));
        select.push(format!(
            "100.0 * {} / {} AS market_index",
            ratio("__cells.customers", "__market.households"),
            ratio("__seg.seg_customers", "__market_total.all_households")
        ));
    }
    format!(
        "WITH {}\nSELECT {}\nFROM __cells {}\nORDER BY __cells.__segment, __cells.__by",
        ctes.join(",\n"),
        select.join(",\n  "),
        joins.join(" ")
    )
}
