//! Ordered rules: the first `when` that holds names the row's segment; the last rule is the
//! mandatory catch-all. The rules themselves are the model: fitting freezes them in the
//! artifact, so monthly runs segment with the year's rules even if the YAML changed since.

use serde::{Deserialize, Serialize};

use crate::rfm::{StoredRule, segment_case};
use crate::sql::quote_ident;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulesModel {
    pub segments: Vec<StoredRule>,
}

/// The column the model adds to its input's: an input that already has one must be refused,
/// or the output would hold two columns of that name.
pub fn added_columns() -> Vec<String> {
    vec!["segment".to_string()]
}

/// Every input column plus `segment`.
pub fn rules_sql(model: &RulesModel, input: &str) -> String {
    format!(
        "SELECT *, {} AS segment FROM {}",
        segment_case(&StoredRule::to_spec(&model.segments)),
        quote_ident(input)
    )
}
