//! The enrichment join as SQL: every input row kept once, reference columns taken from the
//! first key level that matches, and that level's name in `match_level` (NULL: no match).
//!
//! Keys are normalized on both sides with segflow's SQL functions (registered by the engine):
//! `segflow_postal_code(text, country)`, `segflow_postal_area(text, country)` for input keys,
//! `segflow_area_key(text)` for reference tables already keyed by area,
//! `segflow_address(text)`, `segflow_org_number(text, country)`, `segflow_exact(text)`.

use segflow_spec::{
    EnrichSpec, JoinKey, Normalizer, quote_ident as ident, quote_literal as literal,
};

/// The normalized input key of a level, as SQL over the input alias `i`.
pub fn input_key(key: &JoinKey, country: Option<&str>) -> String {
    normalized(
        key.normalize,
        &format!("i.{}", ident(&key.input)),
        country,
        false,
    )
}

/// The normalized reference key of a level, as SQL over the reference alias `r`.
pub fn reference_key(key: &JoinKey, country: Option<&str>) -> String {
    normalized(
        key.normalize,
        &format!("r.{}", ident(&key.key)),
        country,
        true,
    )
}

fn normalized(n: Normalizer, column: &str, country: Option<&str>, reference_side: bool) -> String {
    let text = format!("CAST({column} AS VARCHAR)");
    let country = literal(country.unwrap_or(""));
    match n {
        Normalizer::PostalCode => format!("segflow_postal_code({text}, {country})"),
        // A reference table of areas holds area codes, not postal codes.
        Normalizer::PostalArea if reference_side => format!("segflow_area_key({text})"),
        Normalizer::PostalArea => format!("segflow_postal_area({text}, {country})"),
        Normalizer::Address => format!("segflow_address({text})"),
        Normalizer::OrgNumber => format!("segflow_org_number({text}, {country})"),
        Normalizer::Exact => format!("segflow_exact({text})"),
    }
}

/// One level's reference rows: normalized key and the wanted columns, invalid keys dropped.
pub fn reference_sql(spec: &EnrichSpec, level: usize) -> String {
    let key = &spec.keys[level];
    let k = reference_key(key, spec.country.as_deref());
    let cw = spec.crosswalk.as_ref();
    let cols: Vec<String> = spec
        .columns
        .iter()
        .map(|c| match cw {
            // A re-coded column: the new code where the crosswalk has one, else the code as is.
            Some(w) if &w.column == c => format!(
                "coalesce(CAST(cw.{} AS VARCHAR), CAST(r.{} AS VARCHAR)) AS {}",
                ident(&w.to),
                ident(c),
                ident(c)
            ),
            _ => format!("r.{}", ident(c)),
        })
        .collect();
    let join = cw.map_or_else(String::new, |w| {
        format!(
            " LEFT JOIN {} AS cw ON CAST(cw.{} AS VARCHAR) = CAST(r.{} AS VARCHAR)",
            ident(&w.table.value),
            ident(&w.from),
            ident(&w.column)
        )
    });
    format!(
        "SELECT {k} AS __key, {} FROM {} AS r{join} WHERE {k} IS NOT NULL",
        cols.join(", "),
        ident(&key.reference.value)
    )
}

/// Keys that occur more than once in a level's reference rows (they would duplicate input
/// rows), at most five.
pub fn duplicate_keys_sql(reference_table: &str) -> String {
    format!(
        "SELECT __key, count(*) AS n FROM {} GROUP BY __key HAVING count(*) > 1 ORDER BY __key LIMIT 5",
        ident(reference_table)
    )
}

/// Per level: input rows with a key, and rows whose key is not valid after normalization.
pub fn key_quality_sql(spec: &EnrichSpec) -> String {
    let parts: Vec<String> = spec
        .keys
        .iter()
        .enumerate()
        .flat_map(|(i, key)| {
            let raw = format!("i.{}", ident(&key.input));
            let norm = input_key(key, spec.country.as_deref());
            [
                format!("count({raw}) AS present_{i}"),
                format!("sum(CASE WHEN {raw} IS NOT NULL AND {norm} IS NULL THEN 1 ELSE 0 END) AS invalid_{i}"),
            ]
        })
        .collect();
    format!(
        "SELECT {} FROM {} AS i",
        parts.join(", "),
        ident(&spec.input.value)
    )
}

/// The columns [`enrich_sql`] adds to the input's, its working key columns included (and must
/// not find there already).
pub fn added_columns(spec: &EnrichSpec) -> Vec<String> {
    let mut out: Vec<String> = (0..spec.keys.len()).map(|i| format!("__k{i}")).collect();
    out.extend(spec.columns.iter().cloned());
    out.push(spec.match_column.clone());
    out
}

/// The enriched table. `references[i]` names the registered reference rows of level `i`
/// (from [`reference_sql`]).
pub fn enrich_sql(spec: &EnrichSpec, references: &[String]) -> String {
    let country = spec.country.as_deref();
    let keys: Vec<String> = spec
        .keys
        .iter()
        .enumerate()
        .map(|(i, key)| format!("{} AS __k{i}", input_key(key, country)))
        .collect();
    let joins: Vec<String> = references
        .iter()
        .enumerate()
        .map(|(i, table)| {
            format!(
                "LEFT JOIN {} AS r{i} ON r{i}.__key = i.__k{i}",
                ident(table)
            )
        })
        .collect();
    let pick = |column: Option<&str>| {
        let whens: Vec<String> = spec
            .keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let value =
                    column.map_or_else(|| literal(&key.level), |c| format!("r{i}.{}", ident(c)));
                format!("WHEN r{i}.__key IS NOT NULL THEN {value}")
            })
            .collect();
        format!("CASE {} END", whens.join(" "))
    };
    let mut columns: Vec<String> = spec
        .columns
        .iter()
        .map(|c| format!("{} AS {}", pick(Some(c)), ident(c)))
        .collect();
    columns.push(format!("{} AS {}", pick(None), ident(&spec.match_column)));
    let excluded: Vec<String> = (0..spec.keys.len()).map(|i| format!("__k{i}")).collect();
    format!(
        "WITH i AS (SELECT i.*, {keys} FROM {input} AS i)
SELECT i.* EXCLUDE ({excluded}), {columns}
FROM i {joins}",
        keys = keys.join(", "),
        input = ident(&spec.input.value),
        excluded = excluded.join(", "),
        columns = columns.join(", "),
        joins = joins.join(" "),
    )
}
