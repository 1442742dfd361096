//! Declared types over self-describing files (Parquet, JSON lines), without silent loss.
//!
//! A Parquet DOUBLE declared `int64` used to be cast, and 21420.5 became 21420; JSON lines
//! decoded straight into the declared type did the same inside the JSON decoder. Here each
//! declared column whose file type differs is cast with `try_cast` and checked batch-wise in
//! the plan: a value that was there and is NULL after the cast, or that does not come back
//! the same when cast back to the file's type, would lose information, and its row is a bad
//! row (quarantined or refused by the source's `on_bad_row`), like a CSV cell that does not
//! parse. Everything stays a lazy DataFusion plan: no row is looked at in Rust.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions::string::expr_fn::{concat, concat_ws};
use datafusion::logical_expr::{Expr, Operator, binary_expr, cast, lit, try_cast, when};
use segflow_spec::{ColumnType, Pii, Source};

use crate::schema::arrow_type;

/// Column of a checked frame: whether the row would lose information (never NULL).
pub(crate) const BAD: &str = "__segflow_bad";
/// Column of a checked frame: the row's values as text (personal ones withheld).
pub(crate) const RAW: &str = "__segflow_raw";
/// Column of a checked frame: why the row is bad (NULL for good rows).
pub(crate) const REASON: &str = "__segflow_reason";

/// The type a JSON value of a declared column is decoded as. The JSON decoder casts a
/// number straight into an integer column by truncation (21420.5 → 21420), and rounds into a
/// decimal column, before any check could see it; so integers and decimals are decoded as a
/// wide decimal — 38 digits on each side of the point, exact for any JSON number an export
/// writes — and cast to the declared type in the plan, where the loss is visible.
pub(crate) fn json_read_type(declared: ColumnType) -> DataType {
    match declared {
        ColumnType::Int32 | ColumnType::Int64 | ColumnType::Decimal { .. } => {
            DataType::Decimal256(76, 38)
        }
        other => arrow_type(other),
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether a value of `from` may change when cast to `to`: any change of type, except into
/// text (every value has an exact text form) and from an all-NULL column.
fn may_lose(from: &DataType, to: &DataType) -> bool {
    from != to && !is_text(to) && *from != DataType::Null
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// One declared column of a file: its value (by file column name, or NULL when the drift
/// policy tolerates its absence) and the file's type for it.
pub(crate) struct FileColumn<'a> {
    pub name: Option<&'a str>,
    pub file_type: Option<&'a DataType>,
}

/// The frame of one file with the declared columns (declared names and types) plus [`BAD`],
/// [`RAW`] and [`REASON`]. `file` names the file in reasons.
pub(crate) fn checked_frame(
    source: &Source,
    file: &str,
    df: DataFrame,
    columns: &[FileColumn<'_>],
) -> Result<DataFrame, DataFusionError> {
    let mut values = Vec::with_capacity(source.schema.len() + 3);
    let mut bad_parts = Vec::new();
    let mut reasons = Vec::new();
    let mut raw_fields = Vec::new();
    for (spec, file_column) in source.schema.iter().zip(columns) {
        let target = arrow_type(spec.data_type);
        let personal = matches!(spec.pii, Some(Pii::Hash | Pii::Drop));
        let (Some(name), Some(from)) = (file_column.name, file_column.file_type) else {
            values.push(cast(lit(ScalarValue::Null), target).alias(&spec.name));
            continue;
        };
        let src = column(name);
        raw_fields.push(if personal {
            lit("<pii>")
        } else {
            coalesce(vec![cast(src.clone(), DataType::Utf8), lit("")])
        });
        if !may_lose(from, &target) {
            values.push(cast(src, target).alias(&spec.name));
            continue;
        }
        let converted = try_cast(src.clone(), target.clone());
        let mut lost = converted.clone().is_null();
        if !is_text(from) {
            // Text is parsed, not converted: `007` read as 7 loses nothing, so text is
            // only checked for values that do not parse.
            let back = try_cast(converted.clone(), from.clone());
            lost = lost.or(binary_expr(back, Operator::IsDistinctFrom, src.clone()));
        }
        let bad = src.clone().is_not_null().and(lost);
        let shown = if personal {
            lit("<withheld>")
        } else {
            cast(src, DataType::Utf8)
        };
        reasons.push(
            when(
                bad.clone(),
                concat(vec![
                    lit(format!("{file}: column `{}`: ", spec.name)),
                    shown,
                    lit(format!(
                        " is not a valid {} without losing information (the file has {from})",
                        spec.data_type
                    )),
                ]),
            )
            .end()?,
        );
        bad_parts.push(bad);
        values.push(converted.alias(&spec.name));
    }
    let bad = bad_parts
        .into_iter()
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false));
    values.push(bad.alias(BAD));
    values.push(if raw_fields.is_empty() {
        lit("").alias(RAW)
    } else {
        concat_ws(lit(","), raw_fields).alias(RAW)
    });
    values.push(if reasons.is_empty() {
        cast(lit(ScalarValue::Null), DataType::Utf8).alias(REASON)
    } else {
        concat_ws(lit("; "), reasons).alias(REASON)
    });
    df.select(values)
}

/// The accepted rows of a checked frame, with only the declared columns.
pub(crate) fn accepted(source: &Source, checked: DataFrame) -> Result<DataFrame, DataFusionError> {
    checked.filter(!column(BAD))?.select(
        source
            .schema
            .iter()
            .map(|c| column(&c.name))
            .collect::<Vec<_>>(),
    )
}

/// The bad rows of a checked frame, in the columns of the bad-rows file. These formats have
/// no lines: `line` is 0, and the reason names the file, column and value.
pub(crate) fn rejected(file: &str, checked: DataFrame) -> Result<DataFrame, DataFusionError> {
    checked.filter(column(BAD))?.select(vec![
        lit(file).alias("file"),
        lit(0_i64).alias("line"),
        column(RAW).alias("raw"),
        column(REASON).alias("reason"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_of_type_into_something_but_text_are_checked() {
        assert!(may_lose(&DataType::Float64, &DataType::Int64));
        assert!(may_lose(&DataType::Utf8, &DataType::Int64));
        assert!(may_lose(&DataType::Decimal256(76, 38), &DataType::Int64));
        assert!(!may_lose(&DataType::Int64, &DataType::Int64));
        assert!(!may_lose(&DataType::Float64, &DataType::Utf8));
        assert!(!may_lose(&DataType::Null, &DataType::Int64));
        assert_eq!(
            json_read_type(ColumnType::Int64),
            DataType::Decimal256(76, 38)
        );
        assert_eq!(json_read_type(ColumnType::Float64), DataType::Float64);
    }
}
