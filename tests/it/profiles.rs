//! Segment profiles: KPIs per segment × attribute value and their indexes, against values
//! computed by hand.

use crate::common::{Scratch, parquet_files, project, read_parquet, run_pipeline};

/// Six customers, orders in 2025 (o8 is in 2024 and does not count):
///
/// | cell     | customers  | revenue | orders | AOV | top category      | index (share of segment ÷ share of all) | penetration, market index |
/// |----------|------------|---------|--------|-----|-------------------|------------------------------------------|---------------------------|
/// | A × g1   | c1, c2     | 300     | 3      | 100 | books 260/300     | (2/3) / (3/6) = 133.33                   | 2/1000; 0.002 / (3/4000) = 266.67 |
/// | A × g2   | c3         | 300     | 1      | 300 | music 1           | (1/3) / (3/6) = 66.67                    | 1/3000; 44.44             |
/// | B × g1   | c4         | 50      | 1      | 50  | books 1           | 66.67                                    | 1/1000; 133.33            |
/// | B × g2   | c5, c6     | 150     | 2      | 75  | music 100/150     | 133.33                                   | 2/3000; 88.89             |
///
/// Revenue shares: 300/800, 300/800, 50/800, 150/800.
#[test]
fn segment_profiles_with_indexes_and_market_penetration() {
    let s = Scratch::new();
    s.write(
        "customers.csv",
        "customer_id,segment,geo\nc1,A,g1\nc2,A,g1\nc3,A,g2\nc4,B,g1\nc5,B,g2\nc6,B,g2\n",
    );
    s.write(
        "orders.csv",
        "order_id,customer_id,order_date,amount,category
o1,c1,2025-02-01,60,books
o2,c1,2025-03-01,40,music
o3,c2,2025-04-01,200,books
o4,c3,2025-05-01,300,music
o5,c4,2025-06-01,50,books
o6,c5,2025-07-01,50,books
o7,c6,2025-08-01,100,music
o8,c6,2024-12-31,999,music
",
    );
    s.write("households.csv", "geo,households\ng1,1000\ng2,3000\n");
    let p = s.write(
        "p.yaml",
        r#"
pipeline: profiles
period: year
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, segment: string, geo: string }
  orders:
    path: orders.csv
    schema: { order_id: string, customer_id: string, order_date: date, amount: "decimal(10,2)", category: string }
  households:
    path: households.csv
    schema: { geo: string, households: int64 }
steps:
  - name: segment_profile
    profile:
      customers: customers
      segment: segment
      by: geo
      orders: { table: orders, order_id: order_id, category: category }
      market: { table: households, by: geo, households: households }
outputs:
  segment_profile: { from: segment_profile, order_by: [segment, geo] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let files = parquet_files(&s.path("out/segment_profile/period=2025"));
    let (names, rows) = read_parquet(&files[0]);
    let cols = [
        "segment",
        "geo",
        "customers",
        "customer_share",
        "share_of_segment",
        "revenue",
        "revenue_share",
        "orders",
        "orders_per_customer",
        "avg_order_value",
        "top_category",
        "top_category_share",
        "index",
        "penetration",
        "market_index",
    ];
    let rows = project(&names, &rows, &cols);
    let expected: [(&str, &str, [f64; 12], &str); 4] = [
        (
            "A",
            "g1",
            [
                2.0,
                2.0 / 6.0,
                2.0 / 3.0,
                300.0,
                300.0 / 800.0,
                3.0,
                1.5,
                100.0,
                260.0 / 300.0,
                400.0 / 3.0,
                0.002,
                800.0 / 3.0,
            ],
            "books",
        ),
        (
            "A",
            "g2",
            [
                1.0,
                1.0 / 6.0,
                1.0 / 3.0,
                300.0,
                300.0 / 800.0,
                1.0,
                1.0,
                300.0,
                1.0,
                200.0 / 3.0,
                1.0 / 3000.0,
                400.0 / 9.0,
            ],
            "music",
        ),
        (
            "B",
            "g1",
            [
                1.0,
                1.0 / 6.0,
                1.0 / 3.0,
                50.0,
                50.0 / 800.0,
                1.0,
                1.0,
                50.0,
                1.0,
                200.0 / 3.0,
                0.001,
                400.0 / 3.0,
            ],
            "books",
        ),
        (
            "B",
            "g2",
            [
                2.0,
                2.0 / 6.0,
                2.0 / 3.0,
                150.0,
                150.0 / 800.0,
                2.0,
                1.0,
                75.0,
                100.0 / 150.0,
                400.0 / 3.0,
                2.0 / 3000.0,
                800.0 / 9.0,
            ],
            "music",
        ),
    ];
    assert_eq!(rows.len(), 4);
    for (row, (segment, geo, numbers, top)) in rows.iter().zip(expected) {
        assert_eq!(
            (row[0].as_str(), row[1].as_str(), row[10].as_str()),
            (segment, geo, top)
        );
        let got: Vec<f64> = row[2..10]
            .iter()
            .chain(&row[11..])
            .map(|v| v.parse().expect("number"))
            .collect();
        for (i, (g, w)) in got.iter().zip(numbers).enumerate() {
            assert!(
                (g - w).abs() < 1e-9,
                "{segment}×{geo} column {}: {g} vs {w}",
                cols[if i < 8 { i + 2 } else { i + 3 }]
            );
        }
    }
}
