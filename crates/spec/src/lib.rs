//! segflow's pipeline specification: YAML in, a validated [`Pipeline`] out.
//!
//! Loading happens in three passes, each collecting every problem it finds:
//! 1. YAML syntax (saphyr, which keeps line and column for every node and rejects duplicate keys);
//! 2. decoding into typed structs, expanding `${...}` variables, rejecting unknown keys;
//! 3. cross-references: names, step inputs (read from the SQL itself), outputs and the DAG.
//!
//! The result is either a [`Pipeline`] or a [`SpecErrors`] listing every error with
//! `file:line:col`, the key path and a hint.

mod decode;
mod decode_models;
mod decode_trend;
mod decode_vars;
mod diagnostic;
mod identifier_roles;
mod models;
mod period;
mod period_range;
mod pipeline;
mod quote;
mod sql_refs;
mod sql_vars;
mod trend;
mod validate;
mod vars;
mod yaml;

use std::path::Path;

use saphyr::LoadableYamlNode;

pub use decode::parse_bytes;
pub use diagnostic::{Diagnostic, Location, MAX_HINT_NAMES, Spanned, SpecErrors, Suggester};
pub use models::{
    ArtifactRef, Axis, ClusterSpec, ClvSpec, Crosswalk, EnrichSpec, FrequencyMeasure, JoinKey,
    LookalikeMethod, LookalikeSpec, Lookback, LookbackUnit, MatrixSpec, ModelMode, ModelsOptions,
    MonetaryMeasure, Normalizer, ParetoSpec, PotentialSpec, ProfileMarket, ProfileOrders,
    ProfileSpec, ReportSpec, RfmCuts, RfmSpec, RulesSpec, ScoreMethod, SegmentRule, Split,
    TierBasis, TimeUnit, TrendReportSpec, VintageBy, VintageSpec,
};
pub use period::{Grain, Period, PeriodParseError};
pub use period_range::{PeriodRange, PeriodRangeError, backfill_order};
pub use pipeline::{
    BadRowLimits, Check, CheckKind, ColumnSpec, ColumnType, CsvOptions, DriftAction, EngineOptions,
    Format, IdentifierRole, IdentityInput, IdentitySpec, OnBadRow, Output, Pii, Pipeline,
    SchemaDrift, Severity, Source, SqlStep, Step, StepKind, TextEncoding,
};
pub use quote::{quote_ident, quote_literal};
pub use sql_vars::SqlVar;
pub use trend::{HistoryRange, HistorySpec, PsiOptions, TrendKind, TrendSegment, TrendSpec};
pub use vars::{Mode, Variables};

use diagnostic::Diagnostics;
use yaml::{Ctx, Node};

/// Reads and validates a pipeline file.
pub fn load_file(file: &Path, vars: &Variables) -> Result<Pipeline, SpecErrors> {
    let bytes = std::fs::read(file).map_err(|e| {
        SpecErrors::single(
            file,
            Diagnostic::new(
                Location::default(),
                "",
                format!("cannot read the pipeline file: {e}"),
            ),
        )
    })?;
    load_bytes(&bytes, file, vars)
}

/// Validates the bytes of a pipeline file, which must be UTF-8: the error names the line and
/// column of the first byte that is not, so an editor can jump to it.
pub fn load_bytes(bytes: &[u8], file: &Path, vars: &Variables) -> Result<Pipeline, SpecErrors> {
    match std::str::from_utf8(bytes) {
        Ok(text) => load_str(text, file, vars),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            // Both prefixes are valid UTF-8: the column counts characters, like the YAML ones.
            let col = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1;
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let byte = bytes[e.valid_up_to()];
            Err(SpecErrors::single(
                file,
                Diagnostic::new(
                    Location::new(line, col),
                    "",
                    format!("the pipeline file is not UTF-8 text: byte 0x{byte:02X} here starts no UTF-8 character"),
                )
                .with_hint("save the file as UTF-8 (it looks like Windows-1252 or Latin-1 if the byte is a letter such as `é`)"),
            ))
        }
    }
}

/// Validates pipeline text; `file` names it in messages and anchors relative paths.
pub fn load_str(text: &str, file: &Path, vars: &Variables) -> Result<Pipeline, SpecErrors> {
    load_text(text, file, vars).map_err(|mut errors| {
        for d in &mut errors.diagnostics {
            d.loc = within(text, d.loc);
        }
        errors
    })
}

/// `loc` moved into the file: the YAML parser reports an unexpected end of input on the line
/// after the last one (`%x` alone: line 2 of a one-line file), and an editor cannot jump
/// there. Positions past the end become the end of the last line.
fn within(text: &str, loc: Location) -> Location {
    let lines: Vec<&str> = text.split('\n').collect();
    let line = loc.line.clamp(1, lines.len());
    let width = lines[line - 1].trim_end_matches('\r').chars().count();
    let col = if loc.line > lines.len() {
        width + 1
    } else {
        loc.col.clamp(1, width + 1)
    };
    Location::new(line, col)
}

fn load_text(text: &str, file: &Path, vars: &Variables) -> Result<Pipeline, SpecErrors> {
    let docs = Node::load_from_str(text).map_err(|e| {
        let m = e.marker();
        SpecErrors::single(
            file,
            Diagnostic::new(
                Location::new(m.line(), m.col() + 1),
                "",
                format!("invalid YAML: {}", e.info()),
            ),
        )
    })?;
    let root = match docs.as_slice() {
        [root] => root,
        [] => {
            return Err(SpecErrors::single(
                file,
                Diagnostic::new(Location::new(1, 1), "", "the pipeline file is empty"),
            ));
        }
        [_, second, ..] => {
            return Err(SpecErrors::single(
                file,
                Diagnostic::new(
                    yaml::loc(second),
                    "",
                    "a pipeline file holds one YAML document",
                )
                .with_hint("remove the extra `---` document"),
            ));
        }
    };
    let base_dir = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
    let mut ctx = Ctx {
        diags: Diagnostics::default(),
        vars,
        sql_vars: Default::default(),
        keys: Default::default(),
    };
    let mut doc = decode::document(&mut ctx, root, &base_dir);
    let execution_order = validate::check(&mut ctx, &mut doc);
    identifier_roles::assign(&mut ctx, &mut doc);
    if let (Some(grain), Some(period)) = (doc.grain, vars.period())
        && grain != period.grain()
    {
        ctx.error(
            doc.grain_loc,
            "period",
            format!(
                "the pipeline runs per {grain}, but period `{period}` is a {}",
                period.grain()
            ),
        );
    }
    let Ctx { diags, keys, .. } = ctx;
    let pipeline = diags.into_result(file, doc)?;
    Ok(Pipeline {
        name: pipeline.name.unwrap_or_default(),
        description: pipeline.description,
        grain: pipeline.grain.unwrap_or(Grain::Year),
        output_dir: pipeline.output_dir.unwrap_or_default(),
        models: pipeline.models,
        report: pipeline.report,
        trend_report: pipeline.trend_report,
        engine: pipeline.engine,
        pii_key_env: pipeline.pii_key_env,
        sources: pipeline.sources,
        steps: pipeline.steps,
        outputs: pipeline.outputs,
        execution_order,
        file: file.to_path_buf(),
        key_locations: keys,
    })
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
