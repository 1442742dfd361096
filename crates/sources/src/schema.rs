//! Declared column types → Arrow types, and matching declared columns to a file's own columns.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use segflow_spec::{ColumnSpec, ColumnType, DriftAction, Pii, SchemaDrift};

use crate::error::SourceError;

pub fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::String => DataType::Utf8,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
    }
}

/// Header names as CRM systems write them: stray spaces, other case, a byte-order mark.
fn normalize(name: &str) -> String {
    name.trim_start_matches('\u{feff}').trim().to_lowercase()
}

/// An undeclared header field of a source with personal columns, as errors show it.
pub(crate) const WITHHELD_HEADER: &str =
    "<withheld: undeclared header field of a source with personal columns>";

/// How a file's columns line up with the declaration.
#[derive(Debug)]
pub(crate) struct Matched<'a> {
    /// For each column of the file, the declared column it carries (if any).
    pub per_file_column: Vec<Option<&'a ColumnSpec>>,
    /// For each declared column, its index in the file (`None`: missing, read as NULL).
    pub per_declared_column: Vec<Option<usize>>,
    /// Drift tolerated under `warn`, for the manifest.
    pub warnings: Vec<String>,
}

/// Matches a file's columns to the declaration under the source's drift policy: an added or
/// missing column is an error or a recorded warning, never a silent shift. Required columns
/// must always be present.
pub(crate) fn match_columns<'a>(
    source_name: &str,
    file: &str,
    file_columns: &[String],
    declared: &'a [ColumnSpec],
    drift: SchemaDrift,
) -> Result<Matched<'a>, SourceError> {
    let normalized: Vec<String> = file_columns.iter().map(|c| normalize(c)).collect();
    let declares = |n: &str| declared.iter().any(|c| normalize(&c.name) == n);
    // A header row is data when a line break or a quote went missing (the header then holds
    // the first record's values too), so in a source with personal columns a header field
    // that is not a declared column could be a phone number: it is withheld from errors and
    // warnings, like a bad row's fields. Declared names are the pipeline's own text.
    let personal = declared
        .iter()
        .any(|c| matches!(c.pii, Some(Pii::Hash | Pii::Drop)));
    let shown = |i: usize| -> String {
        if personal && !declares(&normalized[i]) {
            WITHHELD_HEADER.to_string()
        } else {
            file_columns[i].clone()
        }
    };
    for (i, n) in normalized.iter().enumerate() {
        if normalized[..i].contains(n) {
            return Err(SourceError::DuplicateColumn {
                source_name: source_name.to_string(),
                file: file.to_string(),
                column: shown(i),
            });
        }
    }
    let mut warnings = Vec::new();
    let mut per_declared_column = Vec::with_capacity(declared.len());
    for col in declared {
        let position = normalized.iter().position(|n| *n == normalize(&col.name));
        if position.is_none() {
            if col.required || drift.missing == DriftAction::Error {
                return Err(SourceError::MissingColumn {
                    source_name: source_name.to_string(),
                    file: file.to_string(),
                    column: col.name.clone(),
                    found: (0..file_columns.len())
                        .map(shown)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            warnings.push(format!(
                "`{file}` lacks declared column `{}`; read as NULL",
                col.name
            ));
        }
        per_declared_column.push(position);
    }
    let per_file_column: Vec<Option<&ColumnSpec>> = normalized
        .iter()
        .map(|n| declared.iter().find(|c| normalize(&c.name) == *n))
        .collect();
    let added: Vec<usize> = (0..file_columns.len())
        .filter(|&i| per_file_column[i].is_none())
        .collect();
    if !added.is_empty() {
        let names = added
            .iter()
            .map(|&i| format!("`{}`", shown(i).trim()))
            .collect::<Vec<_>>()
            .join(", ");
        match drift.added {
            DriftAction::Error => {
                return Err(SourceError::UndeclaredColumns {
                    source_name: source_name.to_string(),
                    file: file.to_string(),
                    columns: names,
                });
            }
            DriftAction::Warn => warnings.push(format!(
                "`{file}` has undeclared column(s) {names}; not read"
            )),
            DriftAction::Ignore => {}
        }
    }
    Ok(Matched {
        per_file_column,
        per_declared_column,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use segflow_spec::Location;

    fn col(name: &str) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            data_type: ColumnType::String,
            required: false,
            format: None,
            pii: None,
            loc: Location::default(),
        }
    }

    #[test]
    fn matches_headers_loosely_and_reports_missing() {
        let declared = [col("customer_id"), col("email")];
        let file = [
            "\u{feff} Email ".to_string(),
            "extra".into(),
            "CUSTOMER_ID".into(),
        ];
        let m =
            match_columns("c", "f.csv", &file, &declared, SchemaDrift::default()).expect("matches");
        assert_eq!(
            m.warnings,
            vec!["`f.csv` has undeclared column(s) `extra`; not read"]
        );
        assert_eq!(
            m.per_file_column
                .iter()
                .map(|c| c.map(|c| c.name.as_str()))
                .collect::<Vec<_>>(),
            [Some("email"), None, Some("customer_id")]
        );
        let err = match_columns("c", "f.csv", &file[..2], &declared, SchemaDrift::default())
            .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "source `c`: `f.csv` lacks declared column `customer_id` (the file has: \u{feff} Email , extra)"
        );
    }

    /// Regression (found by the CSV property test): a line break lost between the header and
    /// the first record of a source with a `pii: hash` column made the header hold that
    /// record's values, and the missing-column error listed them, e-mail address included
    /// ("the file has: id, amount, day, name, email-1 000 000 …, aaaaaaaa.100000@aaaa.example").
    #[test]
    fn a_header_that_swallowed_a_record_shows_no_personal_value_in_errors() {
        let mut email = col("email");
        email.pii = Some(Pii::Hash);
        let declared = [col("id"), email];
        let file: Vec<String> = ["id", "email-1", "anna.1@mail.example"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let err = match_columns("c", "f.csv", &file, &declared, SchemaDrift::default())
            .expect_err("missing");
        let message = err.to_string();
        assert_eq!(
            message,
            format!(
                "source `c`: `f.csv` lacks declared column `email` (the file has: id, {WITHHELD_HEADER}, {WITHHELD_HEADER})"
            )
        );
        let warned = match_columns(
            "c",
            "f.csv",
            &file[..2],
            &declared[..1],
            SchemaDrift::default(),
        )
        .expect("added columns warn");
        // Without a personal column there is nothing to protect: the names stay.
        assert_eq!(
            warned.warnings,
            vec!["`f.csv` has undeclared column(s) `email-1`; not read"]
        );
        let dup = ["email".to_string(), "a@x".into(), "a@x".into()];
        let err = match_columns("c", "f.csv", &dup, &declared[1..], SchemaDrift::default())
            .expect_err("duplicate");
        assert!(!err.to_string().contains("a@x"), "{err}");
        let added = ["email".to_string(), "a@x".into()];
        let m = match_columns("c", "f.csv", &added, &declared[1..], SchemaDrift::default())
            .expect("warns");
        assert!(
            !m.warnings.iter().any(|w| w.contains("a@x")),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn drift_policy_decides_between_error_warning_and_null() {
        let declared = [col("customer_id"), col("email")];
        let file = ["customer_id".to_string(), "new_col".to_string()];
        let lenient = SchemaDrift {
            added: DriftAction::Ignore,
            missing: DriftAction::Warn,
        };
        let m = match_columns("c", "f.csv", &file, &declared, lenient).expect("tolerated");
        assert_eq!(m.per_declared_column, vec![Some(0), None]);
        assert_eq!(
            m.warnings,
            vec!["`f.csv` lacks declared column `email`; read as NULL"]
        );
        let strict = SchemaDrift {
            added: DriftAction::Error,
            missing: DriftAction::Warn,
        };
        let err = match_columns("c", "f.csv", &file, &declared, strict).expect_err("added");
        assert_eq!(
            err.to_string(),
            "source `c`: `f.csv` has undeclared column(s) `new_col` (schema_drift.added: error)"
        );
        let mut required = [col("customer_id"), col("email")];
        required[1].required = true;
        assert!(
            match_columns("c", "f.csv", &file, &required, lenient).is_err(),
            "required columns never go missing"
        );
    }
}
