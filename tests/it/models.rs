//! RFM and Pareto on small fixtures, against values worked out by hand (in the comments).

use crate::common::{Scratch, parquet_files, project, read_parquet, row, run_pipeline};

/// Reference date 2026-01-01 (end of period 2025). Per customer, counting only orders before it:
///
/// | cust | orders (date, amount)                         | last order | R days | F orders | F days | M sum |
/// |------|-----------------------------------------------|------------|--------|----------|--------|-------|
/// | A    | 12-31 100, 12-01 50, 06-01 25 (2025)          | 2025-12-31 | 1      | 3        | 3      | 175   |
/// | B    | 2025-11-01 300                                | 2025-11-01 | 61     | 1        | 1      | 300   |
/// | C    | 2025-03-01 20, 2025-03-01 30                  | 2025-03-01 | 306    | 2        | 1      | 50    |
/// | D    | 2024-12-31 500                                | 2024-12-31 | 366    | 1        | 1      | 500   |
/// | E    | 2025-12-31 10, 2025-10-10 10                  | 2025-12-31 | 1      | 2        | 2      | 20    |
/// | F    | 2023-01-01 5 (2026-01-01 999 is on the reference date: excluded) | 2023-01-01 | 1096 | 1 | 1 | 5 |
///
/// One order without a customer is ignored.
const ORDERS: &str = "\
order_id,customer_id,order_date,amount
1,A,2025-12-31,100.00
2,A,2025-12-01,50.00
3,A,2025-06-01,25.00
4,B,2025-11-01,300.00
5,C,2025-03-01,20.00
6,C,2025-03-01,30.00
7,D,2024-12-31,500.00
8,E,2025-12-31,10.00
9,E,2025-10-10,10.00
10,F,2026-01-01,999.00
11,F,2023-01-01,5.00
12,,2025-05-05,70.00
";

fn rfm_pipeline(method: &str, frequency: &str, lookback: &str) -> String {
    format!(
        r#"
pipeline: rfm_fixture
period: year
output_dir: out
sources:
  orders:
    path: orders.csv
    schema:
      order_id: int64
      customer_id: string
      order_date: date
      amount: "decimal(10,2)"
steps:
  - name: rfm
    model: rfm
    input: orders
    order_id: order_id
    frequency: {frequency}
    {lookback}
    scores: {{ bins: 3, method: {method} }}
    segments:
      - {{ name: Champions, when: "r >= 3 AND f >= 3" }}
      - {{ name: Big spenders, when: "m = 3" }}
      - {{ name: Lost, when: "r = 1" }}
      - {{ name: Others, when: true }}
outputs:
  rfm: {{ from: rfm, order_by: [customer_id] }}
"#
    )
}

fn run_rfm(method: &str, frequency: &str, lookback: &str) -> Vec<Vec<String>> {
    let s = Scratch::new();
    s.write("orders.csv", ORDERS);
    let p = s.write("p.yaml", &rfm_pipeline(method, frequency, lookback));
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let files = parquet_files(&s.path("out/rfm/period=2025"));
    assert_eq!(files.len(), 1);
    let (names, rows) = read_parquet(&files[0]);
    project(
        &names,
        &rows,
        &[
            "customer_id",
            "recency_days",
            "frequency",
            "monetary",
            "r_score",
            "f_score",
            "m_score",
            "rfm_code",
            "segment",
        ],
    )
}

/// ntile, 3 bins, 2 customers per bucket; ties broken by customer id ascending:
/// - R by days descending: F 1096, D 366 → 1; C 306, B 61 → 2; A 1, E 1 → 3
/// - F by orders ascending: B 1, D 1 → 1; F 1, C 2 → 2; E 2, A 3 → 3
/// - M by sum ascending: F 5, E 20 → 1; C 50, A 175 → 2; B 300, D 500 → 3
#[test]
fn rfm_ntile_scores_and_segments() {
    assert_eq!(
        run_rfm("ntile", "orders", ""),
        vec![
            row(&["A", "1", "3", "175.00", "3", "3", "2", "332", "Champions"]),
            row(&[
                "B",
                "61",
                "1",
                "300.00",
                "2",
                "1",
                "3",
                "213",
                "Big spenders"
            ]),
            row(&["C", "306", "2", "50.00", "2", "2", "2", "222", "Others"]),
            row(&[
                "D",
                "366",
                "1",
                "500.00",
                "1",
                "1",
                "3",
                "113",
                "Big spenders"
            ]),
            row(&["E", "1", "2", "20.00", "3", "3", "1", "331", "Champions"]),
            row(&["F", "1096", "1", "5.00", "1", "2", "1", "121", "Lost"]),
        ]
    );
}

/// quantile, 3 bins: cut points at ranks ceil(k·6/3) = 2 and 4 of the ascending values.
/// - R days 1,1,61,306,366,1096 → cuts 1, 306; score 3 − #{cut < days}: A,E 3; B,C 2; D,F 1
/// - F 1,1,1,2,2,3 → cuts 1, 2; score 1 + #{cut < f}: B,D,F 1; C,E 2; A 3
/// - M 5,20,50,175,300,500 → cuts 20, 175: F,E 1; C,A 2; B,D 3
///
/// Equal values share a score (E and C both F=2, unlike ntile).
#[test]
fn rfm_quantile_scores_share_ties() {
    assert_eq!(
        run_rfm("quantile", "orders", ""),
        vec![
            row(&["A", "1", "3", "175.00", "3", "3", "2", "332", "Champions"]),
            row(&[
                "B",
                "61",
                "1",
                "300.00",
                "2",
                "1",
                "3",
                "213",
                "Big spenders"
            ]),
            row(&["C", "306", "2", "50.00", "2", "2", "2", "222", "Others"]),
            row(&[
                "D",
                "366",
                "1",
                "500.00",
                "1",
                "1",
                "3",
                "113",
                "Big spenders"
            ]),
            row(&["E", "1", "2", "20.00", "3", "2", "1", "321", "Others"]),
            row(&["F", "1096", "1", "5.00", "1", "1", "1", "111", "Lost"]),
        ]
    );
}

/// Purchase days count C's two same-day orders once; a 2-year lookback (orders from
/// 2024-01-01) drops F entirely.
/// ntile R: D 366, C 306 → 1; B 61, A 1 → 2; E 1 → 3.  F (days) ascending: B1, C1 → 1;
/// D1, E2 → 2; A3 → 3.  M: E 20, C 50 → 1; A 175, B 300 → 2; D 500 → 3.
#[test]
fn rfm_purchase_days_and_lookback() {
    let rows = run_rfm("ntile", "purchase_days", "lookback: 2 years");
    let got: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r[0].clone(), r[2].clone(), r[7].clone()])
        .collect();
    assert_eq!(
        got,
        vec![
            row(&["A", "3", "232"]),
            row(&["B", "1", "212"]),
            row(&["C", "1", "111"]),
            row(&["D", "1", "123"]),
            row(&["E", "2", "321"]),
        ]
    );
}

/// Values 500, 300, 100, 50, 50, 0 (total 1000), ranked descending, ties by id:
/// share before each: P1 0 → A; P2 .5 → A; P3 .8 (not below .8) → B; P4 .9 → B;
/// P5 .95 (not below .95) → C; P6 1.0 → C.
#[test]
fn pareto_tiers_at_the_boundaries() {
    let s = Scratch::new();
    s.write(
        "values.csv",
        "customer_id,revenue\nP4,50.00\nP1,500.00\nP6,0.00\nP3,100.00\nP5,50.00\nP2,300.00\n",
    );
    let p = s.write(
        "p.yaml",
        r#"
pipeline: pareto_fixture
period: year
output_dir: out
sources:
  customer_value:
    path: values.csv
    schema: { customer_id: string, revenue: "decimal(10,2)" }
steps:
  - { name: tiers, model: pareto, input: customer_value, value: revenue, tiers: { A: 0.80, B: 0.95 }, rest: C }
outputs:
  tiers: { from: tiers, order_by: [value_rank] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let (names, rows) = read_parquet(&parquet_files(&s.path("out/tiers"))[0]);
    assert_eq!(
        project(
            &names,
            &rows,
            &[
                "customer_id",
                "revenue",
                "value_rank",
                "cumulative_share_before",
                "tier"
            ]
        ),
        vec![
            row(&["P1", "500.00", "1", "0.0", "A"]),
            row(&["P2", "300.00", "2", "0.5", "A"]),
            row(&["P3", "100.00", "3", "0.8", "B"]),
            row(&["P4", "50.00", "4", "0.9", "B"]),
            row(&["P5", "50.00", "5", "0.95", "C"]),
            row(&["P6", "0.00", "6", "1.0", "C"]),
        ]
    );
}
