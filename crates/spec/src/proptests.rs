//! Property tests of the pipeline loader that `segflow validate` runs (issue 11, "Done
//! when"): random text and mutations of the shipped pipelines.
//!
//! Why: `validate` is the first thing a user runs on a half-edited file, so it must answer —
//! never panic, never hang — and every diagnostic must point into the file, whatever the
//! file holds. A valid pipeline must also stay valid under edits that change nothing
//! (reordered top-level keys, comments).
//!
//! Modest case counts keep this fast in a debug build; `PROPTEST_CASES=5000` searches deeper.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use super::*;

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

const SHIPPED: [(&str, &str); 2] = [
    (
        "yearly_segmentation.yaml",
        include_str!("../../../pipelines/yearly_segmentation.yaml"),
    ),
    (
        "monthly_scoring.yaml",
        include_str!("../../../pipelines/monthly_scoring.yaml"),
    ),
];

fn vars(period: &str) -> Variables {
    let mut v = BTreeMap::new();
    v.insert("DATA_DIR".to_string(), "/data".to_string());
    match period.parse() {
        Ok(p) => Variables::new(p, v),
        Err(_) => Variables::from_env(None, v),
    }
}

/// The period each shipped pipeline runs at.
fn period_of(name: &str) -> &'static str {
    if name.starts_with("monthly") {
        "2026-01"
    } else {
        "2025"
    }
}

/// Loads `text` on another thread and gives up after a bound: a hang is a failure, not a
/// stuck test run. Returns the diagnostics (empty when valid) or the failure.
fn load_bounded(text: &str, period: &str) -> Result<Result<Pipeline, SpecErrors>, TestCaseError> {
    let (tx, rx) = mpsc::channel();
    let (text_owned, period) = (text.to_string(), period.to_string());
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(|| {
            load_str(&text_owned, Path::new("/pipelines/p.yaml"), &vars(&period))
        });
        let _ = tx.send(result);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(_)) => Err(TestCaseError::fail(format!(
            "load_str panicked on {text:?}"
        ))),
        Err(_) => Err(TestCaseError::fail(format!(
            "load_str took more than 20 s on {} bytes",
            text.len()
        ))),
    }
}

/// Every diagnostic has a line and column inside the file (a position just past the last
/// character, where YAML reports an unexpected end, counts as inside).
fn check_positions(text: &str, errors: &SpecErrors) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(
        !errors.diagnostics.is_empty(),
        "an error without a diagnostic"
    );
    for d in &errors.diagnostics {
        let Location { line, col } = d.loc;
        prop_assert!(
            (1..=lines.len()).contains(&line),
            "line {line} of {} lines: {d:?}",
            lines.len()
        );
        let width = lines[line - 1].trim_end_matches('\r').chars().count();
        prop_assert!(
            (1..=width + 1).contains(&col),
            "column {col} of a line of {width} characters: {d:?}"
        );
    }
    Ok(())
}

fn check_any(text: &str, period: &str) -> Result<(), TestCaseError> {
    if let Err(errors) = load_bounded(text, period)? {
        check_positions(text, &errors)?;
    }
    Ok(())
}

/// Edits a YAML author makes by mistake (or a fuzzer on purpose).
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(Index),
    DuplicateLine(Index),
    Indent(Index, i8),
    SwapLines(Index, Index),
    /// Replace the value after the first `:` of a line.
    SetValue(Index, String),
    InsertText(Index, Index, String),
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("${UNSET}".to_string()),
        Just("${UNSET:?needed}".to_string()),
        Just("${".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just("&a".to_string()),
        Just("*a".to_string()),
        Just("!!binary x".to_string()),
        Just("|".to_string()),
        Just("-".to_string()),
        Just(": :".to_string()),
        Just("\t".to_string()),
        Just("Åsa 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{200b}\u{feff}".to_string()),
        Just("~".to_string()),
        (1usize..5000).prop_map(|n| "x".repeat(n)),
        (1usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (1usize..300).prop_map(|n| "{a: ".repeat(n) + &"}".repeat(n)),
        (1usize..300).prop_map(|n| "- ".repeat(n)),
        any::<String>(),
        "[a-z_]{1,12}",
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => any::<Index>().prop_map(Edit::DeleteLine),
        2 => any::<Index>().prop_map(Edit::DuplicateLine),
        2 => (any::<Index>(), -4i8..=4).prop_map(|(i, d)| Edit::Indent(i, d)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        4 => (any::<Index>(), scalar()).prop_map(|(i, v)| Edit::SetValue(i, v)),
        2 => (any::<Index>(), any::<Index>(), scalar()).prop_map(|(i, j, v)| Edit::InsertText(i, j, v)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let n = lines.len();
    match edit {
        Edit::DeleteLine(i) => {
            lines.remove(i.index(n));
        }
        Edit::DuplicateLine(i) => {
            let i = i.index(n);
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        Edit::Indent(i, d) => {
            let line = &mut lines[i.index(n)];
            if *d >= 0 {
                *line = " ".repeat(*d as usize) + line;
            } else {
                let strip = line
                    .chars()
                    .take(d.unsigned_abs() as usize)
                    .take_while(|c| *c == ' ')
                    .count();
                *line = line[strip..].to_string();
            }
        }
        Edit::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
        Edit::SetValue(i, v) => {
            let line = &mut lines[i.index(n)];
            if let Some(colon) = line.find(':') {
                *line = format!("{}: {v}", &line[..colon]);
            }
        }
        Edit::InsertText(i, j, v) => {
            let line = &mut lines[i.index(n)];
            let bounds: Vec<usize> = line
                .char_indices()
                .map(|(k, _)| k)
                .chain(std::iter::once(line.len()))
                .collect();
            let at = bounds[j.index(bounds.len())];
            line.insert_str(at, v);
        }
    }
    lines.join("\n")
}

/// The file cut into its top-level entries (a key at column 0 and the lines under it), after
/// a head of comments and blank lines.
fn top_level_blocks(text: &str) -> (String, Vec<String>) {
    let mut head = String::new();
    let mut blocks: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        let starts_entry = line
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace() && c != '#');
        if starts_entry {
            blocks.push(line.to_string());
        } else if let Some(last) = blocks.last_mut() {
            last.push_str(line);
        } else {
            head.push_str(line);
        }
    }
    if let Some(last) = blocks.last_mut()
        && !last.ends_with('\n')
    {
        last.push('\n');
    }
    (head, blocks)
}

/// What a reordering or a comment must not change.
fn essence(p: &Pipeline) -> String {
    format!(
        "{} {:?} {:?} {:?} {:?} {:?}",
        p.name,
        p.grain,
        p.sources.iter().map(|s| &s.name.value).collect::<Vec<_>>(),
        p.steps.len(),
        p.outputs.len(),
        p.execution_order
    )
}

/// Regression (found by the pipeline property test): YAML errors at the end of the input
/// were reported on the line after the last one (`%🌀` alone: line 2 of a one-line file;
/// a lone `? `: line 2 too), a position no editor can jump to.
#[test]
fn an_error_at_the_end_of_the_file_is_reported_inside_it() {
    for text in ["%🌀", "? ", "pipeline: p\nsources: {"] {
        let Err(errors) = load_str(text, Path::new("p.yaml"), &vars("2025")) else {
            panic!("{text:?} is not a pipeline");
        };
        let lines = text.split('\n').count();
        for d in &errors.diagnostics {
            assert!(d.loc.line >= 1 && d.loc.line <= lines, "{text:?}: {d:?}");
            assert!(d.loc.col >= 1, "{text:?}: {d:?}");
        }
    }
}

#[test]
fn the_shipped_pipelines_are_valid() {
    for (name, text) in SHIPPED {
        let loaded = load_bounded(text, period_of(name)).map_err(|e| e.to_string());
        assert!(
            matches!(loaded, Ok(Ok(_))),
            "{name}: {:?}",
            loaded.map(|r| r.err())
        );
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Any text: no panic, no hang, every diagnostic inside the file.
    #[test]
    fn random_text_gets_diagnostics_inside_the_file(text in any::<String>()) {
        check_any(&text, "2025")?;
    }

    /// Text made of YAML's own punctuation and pipeline words, where the parser and the
    /// decoder have the most to get wrong.
    #[test]
    fn yaml_shaped_text_gets_diagnostics_inside_the_file(
        parts in proptest::collection::vec(prop_oneof![
            Just("pipeline: p\n"), Just("period: year\n"), Just("sources:\n"), Just("steps:\n"),
            Just("outputs:\n"), Just("  a:\n"), Just("    path: x.csv\n"), Just("    schema: { id: int64 }\n"),
            Just("  - name: s\n"), Just("    sql: SELECT 1\n"), Just("    sql: |\n      SELECT * FROM a\n"),
            Just("  o: { from: s }\n"), Just("- "), Just(": "), Just("\n"), Just("\t"), Just("  "),
            Just("{"), Just("}"), Just("["), Just("]"), Just("\""), Just("'"), Just("#"), Just("&x "),
            Just("*x"), Just("!!str "), Just("---\n"), Just("..."), Just("${UNSET}"), Just("é"),
            Just("\r\n"), Just("\u{feff}"), Just("? "), Just("|"), Just(">"), Just(","),
        ], 0..60),
        period in prop::sample::select(vec!["2025", "2025-11", "0000", "2025-13"]),
    ) {
        check_any(&parts.concat(), period)?;
    }

    /// Edits of the shipped pipelines: no panic, no hang, every diagnostic inside the file.
    #[test]
    fn edited_shipped_pipelines_get_diagnostics_inside_the_file(
        which in any::<Index>(),
        edits in proptest::collection::vec(edit(), 1..5),
    ) {
        let (name, text) = SHIPPED[which.index(SHIPPED.len())];
        let mut text = text.to_string();
        for e in &edits {
            text = apply(&text, e);
        }
        check_any(&text, period_of(name))?;
    }

    /// Reordering top-level keys and adding comments changes nothing.
    #[test]
    fn reordered_and_commented_pipelines_stay_valid(
        which in any::<Index>(),
        order in Just(()).prop_perturb(|_, mut rng| rng.next_u64()),
        comments in proptest::collection::vec((any::<Index>(), "[ -~]{0,40}"), 0..6),
    ) {
        let (name, text) = SHIPPED[which.index(SHIPPED.len())];
        let (head, mut blocks) = top_level_blocks(text);
        // A deterministic shuffle from the generated seed.
        let mut seed = order | 1;
        for i in (1..blocks.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            blocks.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        // Full-line comments at column 0 before an entry: never inside a block scalar.
        for (at, comment) in &comments {
            let i = at.index(blocks.len());
            blocks[i] = format!("# {comment}\n{}", blocks[i]);
        }
        let edited = head + &blocks.concat();
        let original = load_bounded(text, period_of(name))?
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        match load_bounded(&edited, period_of(name))? {
            Ok(p) => prop_assert_eq!(essence(&p), essence(&original)),
            Err(e) => prop_assert!(false, "{name} became invalid: {e:?}\n{edited}"),
        }
    }
}
