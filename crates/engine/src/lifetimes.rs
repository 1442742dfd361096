//! When a table of the run can be dropped: right after the last step that reads it, unless
//! an output or a data check reads it at the end of the run.

use std::collections::{BTreeMap, BTreeSet};

use segflow_spec::{CheckKind, Pipeline};

#[derive(Debug, Default)]
pub(crate) struct LastUse {
    /// Step name → the tables no one reads after it.
    released_after: BTreeMap<String, Vec<String>>,
}

impl LastUse {
    pub(crate) fn new(pipeline: &Pipeline) -> Self {
        let checks = pipeline
            .sources
            .iter()
            .map(|s| (&s.name.value, &s.checks))
            .chain(pipeline.steps.iter().map(|s| (&s.name.value, &s.checks)));
        let mut kept: BTreeSet<&str> = pipeline
            .outputs
            .iter()
            .map(|o| o.from.value.as_str())
            .collect();
        for (node, checks) in checks {
            for check in checks {
                kept.insert(node);
                match &check.kind {
                    CheckKind::Relationship { to_table, .. } => {
                        kept.insert(&to_table.value);
                    }
                    // Custom SQL may read any table.
                    CheckKind::Sql { .. } => return Self::default(),
                    _ => {}
                }
            }
        }
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        for name in &pipeline.execution_order {
            if let Some(step) = pipeline.step(name) {
                for input in step.inputs() {
                    last.insert(&input.value, name);
                }
            }
        }
        let mut released_after: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (table, step) in last {
            if !kept.contains(table) {
                released_after
                    .entry(step.to_string())
                    .or_default()
                    .push(table.to_string());
            }
        }
        Self { released_after }
    }

    /// Tables that can be dropped once `step` has run.
    pub(crate) fn after(&self, step: &str) -> &[String] {
        self.released_after.get(step).map_or(&[], Vec::as_slice)
    }
}
