//! segflow's key normalizers as SQL functions, so enrichment joins normalize keys inside
//! DataFusion's plans, batch by batch.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use segflow_enrich::normalize::{self, Country};

/// Text of argument `i` as a Utf8 array of `rows` rows.
fn text_arg(args: &[ColumnarValue], i: usize, rows: usize) -> Result<ArrayRef> {
    let array = args[i].clone().into_array(rows)?;
    Ok(arrow::compute::cast(&array, &DataType::Utf8)?)
}

/// The country literal of argument 1 (`'SE'`), checked once per batch.
fn country_arg(args: &[ColumnarValue], name: &str) -> Result<Country> {
    let text = match &args[1] {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(c))
            | ScalarValue::Utf8View(Some(c))
            | ScalarValue::LargeUtf8(Some(c)),
        ) => c.clone(),
        _ => {
            return Err(DataFusionError::Plan(format!(
                "{name}: the country must be a text literal such as 'SE'"
            )));
        }
    };
    Country::parse(&text).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "{name}: unknown country `{text}` (known: {})",
            Country::CODES.join(", ")
        ))
    })
}

fn rows(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

fn map_text(array: &ArrayRef, f: impl Fn(&str) -> Option<String>) -> ArrayRef {
    let strings = array.as_string::<i32>();
    Arc::new(
        strings
            .iter()
            .map(|v| v.and_then(&f))
            .collect::<StringArray>(),
    )
}

fn with_country(name: &'static str, f: fn(&str, Country) -> Option<String>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let n = rows(args);
            let country = country_arg(args, name)?;
            let text = text_arg(args, 0, n)?;
            Ok(ColumnarValue::Array(map_text(&text, |t| f(t, country))))
        }),
    )
}

fn text_only(name: &'static str, f: fn(&str) -> Option<String>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let text = text_arg(args, 0, rows(args))?;
            Ok(ColumnarValue::Array(map_text(&text, f)))
        }),
    )
}

pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udf(with_country("segflow_postal_code", normalize::postal_code));
    ctx.register_udf(with_country("segflow_postal_area", normalize::postal_area));
    ctx.register_udf(with_country("segflow_org_number", normalize::org_number));
    ctx.register_udf(text_only("segflow_address", normalize::address));
    ctx.register_udf(text_only("segflow_area_key", normalize::area_key));
    ctx.register_udf(text_only("segflow_exact", normalize::exact));
}
