//! Declared column types → Arrow types, and matching declared columns to a file's own columns.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use segflow_spec::{ColumnSpec, ColumnType};

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

/// For each column of the file, the declared column it carries (if any). Declared columns the
/// file lacks are an error; columns nobody declared are read as text and then dropped.
pub(crate) fn match_columns<'a>(
    source_name: &str,
    file: &str,
    file_columns: &[String],
    declared: &'a [ColumnSpec],
) -> Result<Vec<Option<&'a ColumnSpec>>, SourceError> {
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
    for col in declared {
        if !normalized.contains(&normalize(&col.name)) {
            return Err(SourceError::MissingColumn {
                source_name: source_name.to_string(),
                file: file.to_string(),
                column: col.name.clone(),
                found: file_columns.join(", "),
            });
        }
    }
    Ok(normalized
        .iter()
        .map(|n| declared.iter().find(|c| normalize(&c.name) == *n))
        .collect())
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
        let m = match_columns("c", "f.csv", &file, &declared).expect("matches");
        assert_eq!(
            m.iter()
                .map(|c| c.map(|c| c.name.as_str()))
                .collect::<Vec<_>>(),
            [Some("email"), None, Some("customer_id")]
        );
        let err = match_columns("c", "f.csv", &file[..2], &declared).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "source `c`: `f.csv` lacks declared column `customer_id` (the file has: \u{feff} Email , extra)"
        );
    }
}
