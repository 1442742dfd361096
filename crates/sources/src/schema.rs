//! Declared column types → Arrow types, and matching declared columns to a file's own columns.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use segflow_spec::{ColumnSpec, ColumnType, DriftAction, SchemaDrift};

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
    for (i, n) in normalized.iter().enumerate() {
        if normalized[..i].contains(n) {
            return Err(SourceError::DuplicateColumn {
                source_name: source_name.to_string(),
                file: file.to_string(),
                column: file_columns[i].clone(),
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
                    found: file_columns.join(", "),
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
    let added: Vec<&String> = file_columns
        .iter()
        .zip(&per_file_column)
        .filter(|(_, m)| m.is_none())
        .map(|(c, _)| c)
        .collect();
    if !added.is_empty() {
        let names = added
            .iter()
            .map(|c| format!("`{}`", c.trim()))
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
