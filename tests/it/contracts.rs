//! Data contracts: every check kind once passing and once failing; a failing `error` check
//! exits 1 and commits nothing, a failing `warn` check is only recorded.

use crate::common::{Scratch, run_pipeline};

const CUSTOMERS: &str = "customer_id,channel\nA,web\nB,store\nC,web\n";
/// Five orders: A twice, one orphan (Z), one without a note, latest 2025-12-20, max amount 250.
const ORDERS: &str = "order_id,customer_id,order_date,amount,note\n\
1,A,2025-01-05,100.00,x\n2,A,2025-06-01,50.00,x\n3,B,2025-12-20,250.00,\n4,C,2025-03-03,10.00,x\n5,Z,2025-04-04,20.00,x\n";

fn pipeline(orders_path: &str, target: &str, check: &str) -> String {
    let (customer_checks, order_checks) = if target == "customers" {
        (check, "")
    } else {
        ("", check)
    };
    format!(
        r#"
pipeline: contracts
period: year
output_dir: out
sources:
  customers:
    path: customers.csv
    schema: {{ customer_id: string, channel: string }}
    checks: [ {customer_checks} ]
  orders:
    path: {orders_path}
    schema: {{ order_id: int64, customer_id: string, order_date: date, amount: "decimal(10,2)", note: string }}
    checks: [ {order_checks} ]
steps:
  - {{ name: counted, sql: "SELECT count(*) AS n FROM orders" }}
outputs:
  counted: {{ from: counted }}
"#
    )
}

struct Case {
    target: &'static str,
    check: &'static str,
    passes: bool,
    /// Expected in the failure message (and the manifest's message or examples).
    expect: &'static str,
}

const CASES: &[Case] = &[
    Case {
        target: "orders",
        check: "{ not_null: customer_id }",
        passes: true,
        expect: "0 row(s) with no `customer_id`",
    },
    Case {
        target: "orders",
        check: "{ not_null: note }",
        passes: false,
        expect: "1 row(s) with no `note`",
    },
    Case {
        target: "orders",
        check: "{ unique: order_id }",
        passes: true,
        expect: "0 value(s)",
    },
    Case {
        target: "orders",
        check: "{ unique: customer_id }",
        passes: false,
        expect: "1 value(s) of (customer_id) occur more than once (e.g. A)",
    },
    Case {
        target: "customers",
        check: "{ accepted_values: { column: channel, values: [web, store] } }",
        passes: true,
        expect: "0 row(s) outside web, store",
    },
    Case {
        target: "customers",
        check: "{ accepted_values: { column: channel, values: [web] } }",
        passes: false,
        expect: "1 row(s) outside web (e.g. store)",
    },
    Case {
        target: "orders",
        check: "{ relationship: { column: customer_id, to: customers.customer_id, max_orphans: 20% } }",
        passes: true,
        expect: "1 of 5 value(s) (20.000%) not in customers.customer_id; tolerated 20.000%",
    },
    Case {
        target: "orders",
        check: "{ relationship: { column: customer_id, to: customers.customer_id, max_orphans: 10% } }",
        passes: false,
        expect: "tolerated 10.000% (e.g. Z)",
    },
    Case {
        target: "orders",
        check: "{ row_count: { min: 5, max: 5 } }",
        passes: true,
        expect: "5 row(s)",
    },
    Case {
        target: "orders",
        check: "{ row_count: { min: 6 } }",
        passes: false,
        expect: "5 row(s); below the minimum 6",
    },
    Case {
        target: "orders",
        check: "{ freshness: { column: order_date, max_age_days: 15 } }",
        passes: true,
        expect: "latest 2025-12-20; must be on or after 2025-12-17",
    },
    Case {
        target: "orders",
        check: "{ freshness: { column: order_date, max_age_days: 5 } }",
        passes: false,
        expect: "latest 2025-12-20; must be on or after 2025-12-27",
    },
    Case {
        target: "orders",
        check: "{ sql: { name: no_refunds, query: \"SELECT order_id FROM orders WHERE amount < 0\" } }",
        passes: true,
        expect: "0 failing row(s)",
    },
    Case {
        target: "orders",
        check: "{ sql: { name: small_orders, query: \"SELECT order_id FROM orders WHERE amount > 100\" } }",
        passes: false,
        expect: "1 failing row(s) (e.g. 3)",
    },
];

#[test]
fn every_check_kind_passes_and_fails() {
    for case in CASES {
        let s = Scratch::new();
        s.write("customers.csv", CUSTOMERS);
        s.write("orders.csv", ORDERS);
        let p = s.write("p.yaml", &pipeline("orders.csv", case.target, case.check));
        let r = run_pipeline(&p, "2025", s.dir.path());
        let m = r.manifest();
        let record = m
            .checks
            .iter()
            .find(|c| c.severity == "error")
            .unwrap_or_else(|| panic!("no record for {}", case.check));
        assert_eq!(
            record.passed, case.passes,
            "{}: {}",
            case.check, record.message
        );
        if case.passes {
            r.assert_code(0);
            assert!(
                record.message.contains(case.expect),
                "{}: {}",
                case.check,
                record.message
            );
        } else {
            r.assert_code(1);
            assert!(
                r.stderr.contains(case.expect),
                "{}: {}",
                case.check,
                r.stderr
            );
            assert!(
                !s.path("out/counted").exists(),
                "{}: a failed error check commits nothing",
                case.check
            );
            assert_eq!(m.status, segflow_manifest::RunStatus::ChecksFailed);
        }
    }
}

#[test]
fn warnings_are_recorded_and_do_not_stop_the_run() {
    let s = Scratch::new();
    s.write("customers.csv", CUSTOMERS);
    s.write("orders.csv", ORDERS);
    let p = s.write(
        "p.yaml",
        &pipeline(
            "orders.csv",
            "orders",
            "{ unique: customer_id, severity: warn }",
        ),
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(0);
    let m = r.manifest();
    let check = &m.checks[0];
    assert_eq!(
        (
            check.name.as_str(),
            check.severity.as_str(),
            check.passed,
            check.failing_rows
        ),
        ("unique", "warn", false, 1)
    );
    assert_eq!(check.examples, vec!["A"]);
    assert!(s.path("out/counted/period=2025").exists());
}

/// `max_change` compares with the previous period's succeeded run, found through its manifest.
#[test]
fn row_count_change_versus_the_previous_period() {
    let s = Scratch::new();
    s.write("customers.csv", CUSTOMERS);
    s.write("orders_2024.csv", ORDERS);
    let mut doubled = ORDERS.to_string();
    for line in ORDERS.lines().skip(1) {
        doubled.push_str(&format!("1{line}\n"));
    }
    s.write("orders_2025.csv", &doubled);
    let check = "{ row_count: { max_change: 50% } }";
    let first = s.write("p.yaml", &pipeline("orders_${period}.csv", "orders", check));
    let r = run_pipeline(&first, "2024", s.dir.path());
    r.assert_code(0);
    assert!(
        r.manifest().checks[0]
            .message
            .contains("no succeeded run for 2023 to compare with")
    );
    let r = run_pipeline(&first, "2025", s.dir.path());
    r.assert_code(1);
    assert!(
        r.stderr.contains("10 row(s); +100.0% versus 5 in 2024"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("more than 50.0%"), "{}", r.stderr);
}
