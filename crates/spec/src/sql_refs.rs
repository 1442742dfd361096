//! Which tables a SQL step reads, found by parsing the query (no data, no catalog needed).
//!
//! segflow derives the DAG from the SQL itself so users never list dependencies twice. The
//! names are resolved by DataFusion's own `resolve_table_references`, the function its planner
//! uses to find what a query needs from the catalog, so the DAG agrees with what runs: a CTE
//! hides a table only inside its scope (`WITH rfm AS (SELECT * FROM rfm) …` still reads the
//! step `rfm`), and unquoted names are lower-cased as DataFusion does (`FROM Orders` reads
//! `orders`, `FROM "Orders"` does not).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion_sql::parser::{DFParser, Statement as DFStatement};
use datafusion_sql::planner::object_name_to_table_reference;
use datafusion_sql::resolve::resolve_table_references;
use sqlparser::ast::{Expr, SetExpr, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// A parse failure, with the position inside the SQL text when the parser gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlSyntaxError {
    pub message: String,
}

fn syntax(message: impl Into<String>) -> SqlSyntaxError {
    SqlSyntaxError {
        message: message.into(),
    }
}

/// Schemas DataFusion provides itself; tables there are not sources or steps.
const BUILT_IN_SCHEMAS: [&str; 1] = ["information_schema"];

/// The distinct tables a single `SELECT`/`WITH` query reads, sorted, named as DataFusion will
/// resolve them at run time. Table functions (`FROM generate_series(1, 10)`) are not tables.
pub fn table_references(sql: &str) -> Result<Vec<String>, SqlSyntaxError> {
    let mut statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| syntax(e.to_string()))?;
    let (Some(statement), true) = (statements.pop_front(), statements.is_empty()) else {
        return Err(syntax(format!(
            "expected exactly one SELECT query, found {} statement(s)",
            statements.len() + 1
        )));
    };
    let DFStatement::Statement(inner) = &statement else {
        return Err(syntax("expected a SELECT query"));
    };
    let Statement::Query(query) = inner.as_ref() else {
        return Err(syntax(format!(
            "expected a SELECT query, found `{}`",
            first_words(sql)
        )));
    };
    if writes_into(query) {
        return Err(syntax(
            "`SELECT … INTO` creates a table; segflow queries are read-only (the step's result is its table)",
        ));
    }
    let (tables, _ctes) =
        resolve_table_references(&statement, true).map_err(|e| syntax(e.strip_backtrace()))?;
    let functions = table_functions(query);
    // A qualified name (`other.orders`) names no source or step; keeping it whole makes the
    // "unknown source or step" message clear.
    Ok(tables
        .into_iter()
        .filter(|t| !t.schema().is_some_and(|s| BUILT_IN_SCHEMAS.contains(&s)))
        .map(|t| t.to_string())
        .filter(|t| !functions.contains(t))
        .collect())
}

/// Names called as table functions and never read as plain tables anywhere in the query.
fn table_functions(query: &sqlparser::ast::Query) -> BTreeSet<String> {
    #[derive(Default)]
    struct Calls {
        functions: BTreeSet<String>,
        tables: BTreeSet<String>,
    }
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, args, .. } = factor
                && let Ok(reference) = object_name_to_table_reference(name.clone(), true)
            {
                if args.is_some() {
                    self.functions.insert(reference.to_string());
                } else {
                    self.tables.insert(reference.to_string());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut calls = Calls::default();
    let _ = query.visit(&mut calls);
    calls.functions.difference(&calls.tables).cloned().collect()
}

/// Whether any `SELECT` in the query has an `INTO` clause, which DataFusion runs as DDL.
fn writes_into(query: &sqlparser::ast::Query) -> bool {
    struct Into;
    impl Visitor for Into {
        type Break = ();
        fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<()> {
            match q.body.as_ref() {
                SetExpr::Select(select) if select.into.is_some() => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    query.visit(&mut Into).is_break()
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
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
    parsed.map(|_| ()).map_err(|e| syntax(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(sql: &str) -> Vec<String> {
        table_references(sql).expect("parses")
    }

    #[test]
    fn finds_tables_but_not_ctes() {
        let sql = "WITH recent AS (SELECT * FROM orders WHERE d > 1)
                   SELECT c.id FROM customers c JOIN recent r ON c.id = r.id
                   WHERE c.id IN (SELECT id FROM vip)";
        assert_eq!(refs(sql), vec!["customers", "orders", "vip"]);
    }

    #[test]
    fn cte_shadowing_a_step_still_depends_on_the_step() {
        // Inside its own definition a (non-recursive) CTE's name still means the table.
        assert_eq!(
            refs("WITH rfm AS (SELECT * FROM rfm WHERE r > 3) SELECT * FROM rfm"),
            vec!["rfm"]
        );
        // A CTE hides a table only in its own query, not in a sibling subquery.
        assert_eq!(
            refs("SELECT * FROM (WITH t AS (SELECT 1 AS x) SELECT * FROM t) a, t"),
            vec!["t"]
        );
    }

    #[test]
    fn uppercase_table_name_resolves_to_source() {
        assert_eq!(
            refs("SELECT * FROM Orders JOIN ORDERS o2 USING (id)"),
            vec!["orders"]
        );
        // Quoted names keep their case, as in DataFusion.
        assert_eq!(refs(r#"SELECT * FROM "Orders""#), vec!["Orders"]);
    }

    #[test]
    fn table_function_is_not_a_dependency() {
        assert_eq!(
            refs("SELECT value FROM generate_series(1, 3) JOIN orders ON true"),
            vec!["orders"]
        );
        assert_eq!(refs("SELECT * FROM range(10)"), Vec::<String>::new());
    }

    #[test]
    fn built_in_and_qualified_names() {
        assert!(refs("SELECT * FROM information_schema.tables").is_empty());
        assert_eq!(refs("SELECT * FROM other.orders"), vec!["other.orders"]);
    }

    #[test]
    fn reports_syntax_errors_and_non_queries() {
        assert!(table_references("SELEC x FROM t").is_err());
        assert!(table_references("DROP TABLE t").is_err());
        assert!(table_references("SELECT 1; SELECT 2").is_err());
        assert!(table_references("COPY t TO 'x.csv'").is_err());
        assert!(table_references("SELECT * INTO evil FROM t").is_err());
        assert!(table_references("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 'x'").is_err());
    }

    #[test]
    fn checks_expressions() {
        assert!(check_expression("r >= 4 AND f >= 4").is_ok());
        assert!(check_expression("r >= (4").is_err());
        assert!(check_expression("r >= 4 f").is_err());
    }
}
