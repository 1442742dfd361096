//! Model shifts: how each model's estimated parameters (cut points, tier thresholds, axis
//! splits, centroids, likelihood parameters) moved between consecutive periods — what a
//! yearly refit changed under the same definition, reported beside the migration. Reads the
//! artifacts each period's run recorded; no data.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_spec::{TrendKind, TrendSpec};
use segflow_trends::Change;

use super::history::{History, Judge, pairs};
use super::{Cell, Rows, verdict_record};
use crate::error::RunError;

pub(super) fn run(
    ctx: &SessionContext,
    step: &str,
    spec: &TrendSpec,
    history: &History,
) -> Result<(DataFrame, Vec<serde_json::Value>), RunError> {
    let mut judge = Judge::new(history);
    let mut rows = Rows::new(TrendKind::Shift);
    let mut verdicts = Vec::new();
    for model in spec.compared_models() {
        for (basis, i, j) in pairs(&history.periods, false) {
            let (a, b) = (&history.periods[i], &history.periods[j]);
            // The definition check reads both artifacts; it fails with the reason when one
            // cannot be read, and then there are no values to show either.
            let verdict = judge
                .periods(a, b)
                .and(judge.model_definition(a, b, &model));
            verdicts.push(verdict_record(&model, basis, &a.label, &b.label, &verdict));
            let (Ok(ma), Ok(mb)) = (judge.model(a, &model), judge.model(b, &model)) else {
                rows.push(vec![
                    model.as_str().into(),
                    Cell::Str(None),
                    a.label.as_str().into(),
                    b.label.as_str().into(),
                    Cell::Str(None),
                    Cell::Num(None),
                    Cell::Num(None),
                    Cell::Num(None),
                    Cell::Num(None),
                    false.into(),
                    verdict.reason().into(),
                ]);
                continue;
            };
            let mut names: Vec<&String> = ma.view.estimates.iter().map(|(n, _)| n).collect();
            for (n, _) in &mb.view.estimates {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            let find = |v: &[(String, f64)], name: &str| {
                v.iter().find(|(n, _)| n == name).map(|(_, x)| *x)
            };
            for name in names {
                let from = find(&ma.view.estimates, name);
                let to = find(&mb.view.estimates, name);
                let change = Change::between(from, to);
                rows.push(vec![
                    model.as_str().into(),
                    mb.kind.as_str().into(),
                    a.label.as_str().into(),
                    b.label.as_str().into(),
                    name.as_str().into(),
                    Cell::from(from),
                    Cell::from(to),
                    Cell::from(change.absolute),
                    Cell::from(change.relative),
                    verdict.comparable.into(),
                    verdict.reason().into(),
                ]);
            }
        }
    }
    Ok((rows.into_frame(ctx, step)?, verdicts))
}
