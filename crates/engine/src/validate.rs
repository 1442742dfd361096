//! Static validation: every step planned against empty tables with the declared schemas, so
//! `segflow validate` reports unknown columns, columns of the wrong type and clashes — all
//! of them, each at its key — before a run reads anything (item 18: `date: orderdate` passed
//! validation and failed the run after the data had been read).
//!
//! Reads nothing but the pipeline: no file is listed or opened, no model artifact is read (a
//! monthly run's missing artifact is still reported when the run looks for it). DataFusion
//! does the work: sources become empty `MemTable`s of their declared (and protected) schema,
//! each step's SQL — the user's, or the SQL a model generates — is planned, and the planned
//! schema becomes the next empty table. A step with errors gets no table, and steps reading
//! it are skipped, so one mistake is reported once, not once per reader.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::SchemaError;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use segflow_spec::{
    CheckKind, Diagnostic, Grain, Location, Period, Pipeline, Spanned, Step, StepKind, Suggester,
};

use crate::steps::columns::{added_columns, column_uses, kind_key};
use crate::steps::frames::read_only;

/// Every problem found by planning the pipeline without data, in file order. `period` is the
/// run's, or a placeholder of the pipeline's grain (the one `${period}` expands to when
/// validating without `--period`).
pub async fn validate(pipeline: &Pipeline, period: Option<Period>) -> Vec<Diagnostic> {
    let period = period.unwrap_or(match pipeline.grain {
        Grain::Year => Period::year(2000),
        Grain::Month => Period::month(2000, 1),
    });
    let mut v = Validator {
        pipeline,
        ctx: session(),
        tables: HashMap::new(),
        diagnostics: Vec::new(),
    };
    for name in &pipeline.execution_order {
        if let Some(source) = pipeline.source(name) {
            v.register(name, Some(segflow_sources::table_schema(source)));
        } else if let Some((i, step)) = pipeline
            .steps
            .iter()
            .enumerate()
            .find(|(_, s)| &s.name.value == name)
        {
            let schema = v.step(i, step, period).await;
            v.register(name, schema);
        }
    }
    v.checks().await;
    v.outputs();
    let mut diagnostics = v.diagnostics;
    diagnostics.sort_by_key(|d| d.loc);
    diagnostics
}

fn session() -> SessionContext {
    // Spans let an unknown column in a query be named with its line and column.
    let config = SessionConfig::new()
        .with_information_schema(true)
        .set_bool("datafusion.sql_parser.collect_spans", true);
    let ctx = SessionContext::new_with_config(config);
    crate::key_functions::register(&ctx);
    ctx
}

struct Validator<'a> {
    pipeline: &'a Pipeline,
    ctx: SessionContext,
    /// Every source and step planned so far: its schema, or `None` when it had errors.
    tables: HashMap<String, Option<SchemaRef>>,
    diagnostics: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn register(&mut self, name: &str, schema: Option<SchemaRef>) {
        if let Some(schema) = &schema {
            // An empty table of this schema cannot fail to build; if it did, readers of the
            // table would only be skipped.
            if let Ok(table) = MemTable::try_new(Arc::clone(schema), vec![Vec::new()]) {
                let _ = self.ctx.register_table(name, Arc::new(table));
            }
        }
        self.tables.insert(name.to_string(), schema);
    }

    fn schema(&self, table: &str) -> Option<&SchemaRef> {
        self.tables.get(table).and_then(Option::as_ref)
    }

    /// Where `key_path` was written, else `fallback`.
    fn at(&self, key_path: &str, fallback: Location) -> Location {
        self.pipeline.key_location(key_path).unwrap_or(fallback)
    }

    fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Checks the step's columns against its inputs, then plans it; returns its schema.
    async fn step(&mut self, i: usize, step: &Step, period: Period) -> Option<SchemaRef> {
        // Inputs with errors of their own: this step cannot be judged.
        if step
            .inputs()
            .iter()
            .any(|t| self.schema(&t.value).is_none())
        {
            return None;
        }
        let path = format!("steps[{i}]");
        let before = self.diagnostics.len();
        for u in column_uses(step) {
            let Some(schema) = self.schema(&u.table.value).cloned() else {
                continue;
            };
            let key_path = format!("{path}.{}", u.key);
            let written = self.pipeline.key_location(&key_path);
            let loc = written.unwrap_or(step.name.loc);
            // A column the YAML does not name is the key's default: say so.
            let default = if written.is_none() {
                format!(" (the default of `{}`)", u.key)
            } else {
                String::new()
            };
            match schema.field_with_name(u.column) {
                Err(_) => {
                    let d = unknown_column(loc, &key_path, u.column, &u.table.value, &schema);
                    self.push(Diagnostic {
                        message: format!("{}{default}", d.message),
                        ..d
                    });
                }
                Ok(field) if !u.want.accepts(field.data_type()) => self.push(
                    Diagnostic::new(
                        loc,
                        &key_path,
                        format!(
                            "column `{}` of `{}` is {}, but `{}` needs {}{default}",
                            u.column,
                            u.table.value,
                            type_name(field.data_type()),
                            u.key,
                            u.want.noun()
                        ),
                    )
                    .with_hint(format!(
                        "declare `{}` with the right type in the source's `schema:`, or CAST it in a SQL step before this one",
                        u.column
                    )),
                ),
                Ok(_) => {}
            }
        }
        if let Some((input, added)) = added_columns(step)
            && let Some(schema) = self.schema(&input.value).cloned()
        {
            for name in added.iter().filter(|n| schema.field_with_name(n).is_ok()) {
                let key_path = format!("{path}.{}", kind_key(step));
                let loc = self.at(&key_path, step.name.loc);
                self.push(
                    Diagnostic::new(
                        loc,
                        &key_path,
                        format!(
                            "input `{}` already has a column `{name}`, which step `{}` adds to its output",
                            input.value, step.name.value
                        ),
                    )
                    .with_hint("rename or drop it in a SQL step before this one"),
                );
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        if let StepKind::Identity(_) = step.kind {
            return Some(crate::steps::identity::output_schema());
        }
        let key_path = format!("{path}.{}", kind_key(step));
        let loc = self.at(&key_path, step.name.loc);
        let name = step.name.value.as_str();
        let sql = match crate::steps::runner(step)
            .explain_sql(&self.ctx, name, period)
            .await
        {
            Ok(sql) => sql,
            Err(e) => {
                self.push(Diagnostic::new(loc, &key_path, e.to_string()));
                return None;
            }
        };
        match self.ctx.sql_with_options(&sql, read_only()).await {
            Ok(df) => Some(Arc::new(df.schema().as_arrow().clone())),
            Err(e) => {
                let user_sql = matches!(step.kind, StepKind::Sql(_));
                self.push(plan_error(loc, &key_path, &e, user_sql));
                None
            }
        }
    }

    /// Columns named by data contracts, and contract queries planned.
    async fn checks(&mut self) {
        let p = self.pipeline;
        let owners = p
            .sources
            .iter()
            .map(|s| (&s.name, &s.checks, format!("sources.{}", s.name.value)))
            .chain(
                p.steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (&s.name, &s.checks, format!("steps[{i}]"))),
            );
        for (owner, checks, owner_path) in owners {
            let Some(schema) = self.schema(&owner.value).cloned() else {
                continue;
            };
            for (j, check) in checks.iter().enumerate() {
                let path = format!("{owner_path}.checks[{j}]");
                let mut named: Vec<(&str, &Spanned<String>, Option<&SchemaRef>)> = Vec::new();
                match &check.kind {
                    CheckKind::NotNull { column }
                    | CheckKind::AcceptedValues { column, .. }
                    | CheckKind::Freshness { column, .. } => {
                        named.push((column, owner, Some(&schema)));
                    }
                    CheckKind::Unique { columns } => {
                        named.extend(columns.iter().map(|c| (c.as_str(), owner, Some(&schema))));
                    }
                    CheckKind::Relationship {
                        column,
                        to_table,
                        to_column,
                        ..
                    } => {
                        named.push((column, owner, Some(&schema)));
                        named.push((to_column, to_table, self.schema(&to_table.value)));
                    }
                    CheckKind::Sql { query, .. } => {
                        if let Err(e) = self.ctx.sql_with_options(query, read_only()).await {
                            self.push(plan_error(check.loc, &path, &e, true));
                        }
                    }
                    CheckKind::RowCount { .. } => {}
                }
                let mut found = Vec::new();
                for (column, table, table_schema) in named {
                    if let Some(s) = table_schema
                        && s.field_with_name(column).is_err()
                    {
                        found.push(unknown_column(check.loc, &path, column, &table.value, s));
                    }
                }
                self.diagnostics.extend(found);
            }
        }
    }

    /// Partition and sort columns of every output exist in the table it writes.
    fn outputs(&mut self) {
        let p = self.pipeline;
        for out in &p.outputs {
            let Some(schema) = self.schema(&out.from.value).cloned() else {
                continue;
            };
            let path = format!("outputs.{}", out.name.value);
            let lists = [
                ("partition_by", &out.partition_by),
                ("order_by", &out.order_by),
            ];
            for (key, columns) in lists {
                for (j, column) in columns.iter().enumerate() {
                    // `period` is the column segflow adds to every output.
                    if (key == "partition_by" && j == 0 && column == "period")
                        || schema.field_with_name(column).is_ok()
                    {
                        continue;
                    }
                    let key_path = format!("{path}.{key}[{j}]");
                    let loc = self.at(&key_path, out.name.loc);
                    let d = unknown_column(loc, &key_path, column, &out.from.value, &schema);
                    self.push(d);
                }
            }
        }
    }
}

fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Boolean => "true/false".into(),
        other => format!("of type {other}"),
    }
}

/// "table `orders` has no column `orderdate`", with the closest of its columns as the hint.
fn unknown_column(
    loc: Location,
    key_path: &str,
    column: &str,
    table: &str,
    schema: &SchemaRef,
) -> Diagnostic {
    let names = Suggester::new(schema.fields().iter().map(|f| f.name().as_str()));
    Diagnostic::new(loc, key_path, format!("`{table}` has no column `{column}`"))
        .with_hint(names.hint(column, &format!("columns of `{table}`")))
}

/// A planning error as a diagnostic; an unknown column gets its position in the query (for the
/// user's own SQL) and a short hint instead of DataFusion's list of every valid field.
fn plan_error(loc: Location, key_path: &str, e: &DataFusionError, user_sql: bool) -> Diagnostic {
    if let DataFusionError::SchemaError(err, _) = e.find_root()
        && let SchemaError::FieldNotFound {
            field,
            valid_fields,
        } = err.as_ref()
    {
        let at = field
            .spans
            .first()
            .filter(|_| user_sql)
            .map(|s| {
                format!(
                    " (line {}, column {} of the query)",
                    s.start.line, s.start.column
                )
            })
            .unwrap_or_default();
        let names = Suggester::new(valid_fields.iter().map(|c| c.name.as_str()));
        return Diagnostic::new(
            loc,
            key_path,
            format!("unknown column `{}`{at}", field.name),
        )
        .with_hint(names.hint(&field.name, "columns in scope"));
    }
    let mut text = e.find_root().strip_backtrace();
    if text.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    Diagnostic::new(loc, key_path, format!("cannot plan the query: {text}"))
}
