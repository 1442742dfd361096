//! Which tables a SQL step reads, found by parsing the query (no data, no catalog needed).
//!
//! segflow derives the DAG from the SQL itself so users never list dependencies twice.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Query, Statement, visit_relations};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// A parse failure, with the position inside the SQL text when the parser gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlSyntaxError {
    pub message: String,
}

/// The distinct table names a single `SELECT`/`WITH` query reads, in first-seen order.
pub fn table_references(sql: &str) -> Result<Vec<String>, SqlSyntaxError> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| SqlSyntaxError {
        message: e.to_string(),
    })?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return Err(SqlSyntaxError {
            message: format!(
                "expected exactly one SELECT query, found {} statement(s)",
                statements.len()
            ),
        });
    };
    let mut ctes = BTreeSet::new();
    collect_cte_names(query, &mut ctes);
    let mut seen = Vec::new();
    let _ = visit_relations(&statements, |name| {
        let table = name
            .0
            .last()
            .map(|part| part.to_string().trim_matches('"').to_string())
            .unwrap_or_default();
        if !ctes.contains(&table) && !seen.contains(&table) {
            seen.push(table);
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(seen)
}

/// CTE names are local to the query and not DAG inputs.
fn collect_cte_names(query: &Query, out: &mut BTreeSet<String>) {
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            out.insert(cte.alias.name.value.clone());
            collect_cte_names(&cte.query, out);
        }
    }
}

/// Checks a boolean SQL expression (a segment rule's `when`) for syntax errors.
pub fn check_expression(expr: &str) -> Result<(), SqlSyntaxError> {
    let parsed: Result<Expr, _> =
        Parser::new(&GenericDialect {})
            .try_with_sql(expr)
            .and_then(|mut p| {
                let e = p.parse_expr()?;
                p.expect_token(&sqlparser::tokenizer::Token::EOF)?;
                Ok(e)
            });
    parsed.map(|_| ()).map_err(|e| SqlSyntaxError {
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tables_but_not_ctes() {
        let sql = "WITH recent AS (SELECT * FROM orders WHERE d > 1)
                   SELECT c.id FROM customers c JOIN recent r ON c.id = r.id
                   WHERE c.id IN (SELECT id FROM vip)";
        assert_eq!(
            table_references(sql).expect("parses"),
            vec!["orders", "customers", "vip"]
        );
    }

    #[test]
    fn reports_syntax_errors_and_non_queries() {
        assert!(table_references("SELEC x FROM t").is_err());
        assert!(table_references("DROP TABLE t").is_err());
        assert!(table_references("SELECT 1; SELECT 2").is_err());
    }

    #[test]
    fn checks_expressions() {
        assert!(check_expression("r >= 4 AND f >= 4").is_ok());
        assert!(check_expression("r >= (4").is_err());
        assert!(check_expression("r >= 4 f").is_err());
    }
}
