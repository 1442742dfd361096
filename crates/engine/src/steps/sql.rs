//! `sql:` steps: the user's query, read-only, over sources and earlier steps.

use async_trait::async_trait;
use datafusion::execution::context::SessionContext;
use segflow_spec::{Period, SqlStep};

use super::frames::query;
use super::{StepContext, StepOutput, StepRunner};
use crate::error::RunError;

pub(crate) struct Sql<'a>(pub &'a SqlStep);

#[async_trait]
impl StepRunner for Sql<'_> {
    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput, RunError> {
        Ok(StepOutput::rows(
            query(cx.ctx, cx.name(), &self.0.sql.value).await?,
        ))
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        _step: &str,
        _period: Period,
    ) -> Result<String, RunError> {
        Ok(self.0.sql.value.clone())
    }
}
