//! What each step kind reads from its inputs and adds to them, declared without data, so
//! validation can check every named column against the declared schemas before a run reads
//! anything. The run's own checks (`require_columns`, `refuse_clashes`) stay as a last guard.

use datafusion::arrow::datatypes::DataType;
use segflow_spec::{LookalikeMethod, Spanned, Step, StepKind};

/// What a model needs a column to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    Any,
    /// Integers, floats or decimals.
    Number,
    /// Dates or timestamps.
    Temporal,
}

impl Want {
    pub(crate) fn accepts(self, t: &DataType) -> bool {
        match self {
            Want::Any => true,
            Want::Number => t.is_numeric() || t.is_null(),
            Want::Temporal => t.is_temporal() || t.is_null(),
        }
    }

    pub(crate) fn noun(self) -> &'static str {
        match self {
            Want::Any => "any value",
            Want::Number => "a number",
            Want::Temporal => "a date",
        }
    }
}

/// One column a step names: which input it is read from, and the key (relative to the step,
/// e.g. `date`, `features[1]`, `inputs[0].email`) that names it.
#[derive(Debug)]
pub(crate) struct ColumnUse<'a> {
    pub table: &'a Spanned<String>,
    pub column: &'a str,
    pub key: String,
    pub want: Want,
}

fn one<'a>(table: &'a Spanned<String>, column: &'a str, key: &str, want: Want) -> ColumnUse<'a> {
    ColumnUse {
        table,
        column,
        key: key.to_string(),
        want,
    }
}

fn list<'a>(
    table: &'a Spanned<String>,
    columns: &'a [String],
    key: &str,
    want: Want,
) -> impl Iterator<Item = ColumnUse<'a>> + 'a {
    let key = key.to_string();
    columns.iter().enumerate().map(move |(i, c)| ColumnUse {
        table,
        column: c,
        key: format!("{key}[{i}]"),
        want,
    })
}

/// The columns `step` names in its inputs. SQL steps (and expressions such as `when`) are
/// checked by planning them instead; enrichment and profiles through their generated SQL.
pub(crate) fn column_uses(step: &Step) -> Vec<ColumnUse<'_>> {
    use Want::{Any, Number, Temporal};
    match &step.kind {
        StepKind::Rfm(m) => {
            let mut out = vec![
                one(&m.input, &m.customer, "customer", Any),
                one(&m.input, &m.date, "date", Temporal),
                one(&m.input, &m.amount, "amount", Number),
            ];
            out.extend(
                m.order_id
                    .as_deref()
                    .map(|c| one(&m.input, c, "order_id", Any)),
            );
            out
        }
        StepKind::Pareto(m) => vec![
            one(&m.input, &m.customer, "customer", Any),
            one(&m.input, &m.value, "value", Number),
        ],
        StepKind::Matrix(m) => vec![one(&m.input, &m.key, "key", Any)],
        StepKind::Cluster(m) => std::iter::once(one(&m.input, &m.key, "key", Any))
            .chain(list(&m.input, &m.numeric, "features", Number))
            .chain(list(&m.input, &m.categorical, "categorical", Any))
            .collect(),
        StepKind::Clv(m) => vec![
            one(&m.input, &m.customer, "customer", Any),
            one(&m.input, &m.date, "date", Temporal),
            one(&m.input, &m.amount, "amount", Number),
        ],
        StepKind::Lookalike(m) => {
            let attribute = match m.method {
                LookalikeMethod::Centroid => Number,
                LookalikeMethod::Index => Any,
            };
            std::iter::once(one(&m.customers, &m.segment, "segment", Any))
                .chain(list(&m.customers, &m.attributes, "attributes", attribute))
                .chain(std::iter::once(one(&m.prospects, &m.key, "key", Any)))
                .chain(list(&m.prospects, &m.attributes, "attributes", attribute))
                .collect()
        }
        StepKind::Potential(m) => [&m.customers, &m.market]
            .into_iter()
            .flat_map(|table| {
                std::iter::once(one(table, &m.key, "key", Any))
                    .chain(list(table, &m.numeric, "numeric", Number))
                    .chain(list(table, &m.categorical, "categorical", Any))
            })
            .chain(std::iter::once(one(
                &m.customers,
                &m.target,
                "target",
                Number,
            )))
            .collect(),
        StepKind::Identity(m) => m
            .inputs
            .iter()
            .enumerate()
            .flat_map(|(i, input)| {
                let named = [
                    ("key", Some(&input.key)),
                    ("email", input.email.as_ref()),
                    ("phone", input.phone.as_ref()),
                    ("national_id", input.national_id.as_ref()),
                    ("name", input.name.as_ref()),
                    ("address", input.address.as_ref()),
                    ("postal_code", input.postal_code.as_ref()),
                ];
                named.into_iter().filter_map(move |(key, column)| {
                    column.map(|c| one(&input.from, c, &format!("inputs[{i}].{key}"), Any))
                })
            })
            .collect(),
        // A trend step reads committed outputs, not this pipeline's tables: their columns are
        // checked when the run finds them.
        StepKind::Sql(_)
        | StepKind::Rules(_)
        | StepKind::Enrich(_)
        | StepKind::Profile(_)
        | StepKind::Trend(_) => Vec::new(),
    }
}

/// The input whose columns are carried into the step's output, and the columns the step adds
/// next to them (its working columns too): an input that already has one must be refused.
pub(crate) fn added_columns(step: &Step) -> Option<(&Spanned<String>, Vec<String>)> {
    match &step.kind {
        StepKind::Rules(m) => Some((&m.input, segflow_models::rules::added_columns())),
        StepKind::Enrich(m) => Some((&m.input, segflow_enrich::join::added_columns(m))),
        StepKind::Lookalike(m) => Some((
            &m.prospects,
            segflow_models::lookalike::added_columns(&super::lookalike::placeholder_model(m)),
        )),
        StepKind::Potential(m) => Some((
            &m.market,
            segflow_models::potential::added_columns(&super::potential::placeholder_model(m)),
        )),
        _ => None,
    }
}

/// The key under which a step's kind is written, where a problem with the step as a whole
/// (its SQL, its generated SQL) is reported.
pub(crate) fn kind_key(step: &Step) -> &'static str {
    match &step.kind {
        StepKind::Sql(_) => "sql",
        StepKind::Enrich(_) => "enrich",
        StepKind::Profile(_) => "profile",
        StepKind::Trend(_) => "trend",
        _ => "model",
    }
}
