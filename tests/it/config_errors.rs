//! Bad configuration and bad arguments: every error at once, with positions, documented exit
//! codes, and no data read.

use crate::common::{Scratch, segflow};

/// Three independent mistakes: a misspelt type, an unknown input and a misspelt key.
const THREE_MISTAKES: &str = "\
pipeline: broken
period: year
output_dir: out
sources:
  orders:
    path: orders.csv
    schema:
      customer_id: strng
      amount: \"decimal(10,2)\"
steps:
  - name: rfm
    model: rfm
    input: ordres
    segments:
      - { name: All, when: true }
outputs:
  rfm: { from: rfm, partiton_by: [period] }
";

#[test]
fn three_mistakes_three_errors_no_data_read() {
    let s = Scratch::new();
    // The data file is deliberately unreadable garbage: reading it would fail differently.
    s.write("orders.csv", "\u{0}\u{1}not csv");
    let p = s.write("broken.yaml", THREE_MISTAKES);
    for command in ["validate", "run"] {
        let mut args = vec![command, p.to_str().expect("utf8")];
        if command == "run" {
            args.extend(["--period", "2025"]);
        }
        let r = segflow(&args, s.dir.path());
        r.assert_code(78);
        let lines: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("broken.yaml:"))
            .collect();
        assert_eq!(lines.len(), 3, "{}", r.stderr);
        assert!(
            lines[0].ends_with(
                "broken.yaml:8:20: sources.orders.schema.customer_id: unknown column type `strng`"
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with("broken.yaml:13:12: steps[0]: unknown source or step `ordres`"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2]
                .ends_with("broken.yaml:17:21: outputs.rfm.partiton_by: unknown key `partiton_by`"),
            "{}",
            lines[2]
        );
        assert!(r.stderr.contains("hint: did you mean `string`?"));
        assert!(r.stderr.contains("hint: did you mean `orders`?"));
        assert!(r.stderr.contains("hint: did you mean `partition_by`?"));
        assert!(r.stderr.contains("3 configuration errors in"));
        assert!(
            !s.path("out").exists(),
            "nothing may be written for an invalid pipeline"
        );
    }
}

#[test]
fn unset_variable_names_the_variable_and_the_remedy() {
    let s = Scratch::new();
    let p = s.write(
        "p.yaml",
        "pipeline: p\nperiod: year\nsources:\n  o: { path: '${EXPORTS:?point EXPORTS at the CRM exports}/o.csv', schema: { x: int64 } }\nsteps: [ { name: s, sql: SELECT x FROM o } ]\noutputs: { s: { from: s } }\n",
    );
    let r = segflow(&["validate", p.to_str().expect("utf8")], s.dir.path());
    r.assert_code(78);
    assert!(r.stderr.contains("p.yaml:4:"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("variable `EXPORTS` is not set: point EXPORTS at the CRM exports"),
        "{}",
        r.stderr
    );
    // `--var` provides it.
    let r = segflow(
        &[
            "validate",
            p.to_str().expect("utf8"),
            "--var",
            "EXPORTS=/data",
        ],
        s.dir.path(),
    );
    r.assert_code(0);
    assert!(
        r.stdout
            .contains("pipeline `p` is valid (1 sources, 1 steps, 1 outputs)")
    );
}

#[test]
fn usage_errors_exit_64() {
    let s = Scratch::new();
    segflow(&["run", "p.yaml", "--period", "2025-13"], s.dir.path()).assert_code(64);
    segflow(&["run", "p.yaml"], s.dir.path()).assert_code(64);
    segflow(&["frobnicate"], s.dir.path()).assert_code(64);
    let r = segflow(&["validate", "p.yaml", "--var", "NOEQUALS"], s.dir.path());
    r.assert_code(64);
    assert!(r.stderr.contains("expected NAME=VALUE"));
}

#[test]
fn monthly_period_for_a_yearly_pipeline_is_rejected() {
    let r = segflow(
        &[
            "validate",
            "pipelines/yearly_segmentation.yaml",
            "--period",
            "2025-11",
            "--var",
            "DATA_DIR=/nowhere",
        ],
        crate::common::repo_root(),
    );
    r.assert_code(78);
    assert!(r.stderr.contains("yearly_segmentation.yaml:18:9: period: the pipeline runs per year, but period `2025-11` is a month"), "{}", r.stderr);
}
