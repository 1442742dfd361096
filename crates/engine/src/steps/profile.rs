//! `profile:` steps: KPIs per segment (× attribute), as one query (`segflow-profiles`).

use async_trait::async_trait;
use datafusion::execution::context::SessionContext;
use segflow_profiles::profile_sql;
use segflow_spec::{Period, ProfileSpec};

use super::frames::query;
use super::{StepContext, StepOutput, StepRunner};
use crate::error::RunError;

pub(crate) struct Profile<'a>(pub &'a ProfileSpec);

#[async_trait]
impl StepRunner for Profile<'_> {
    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput, RunError> {
        let sql = profile_sql(self.0, cx.period.start(), cx.period.end());
        Ok(StepOutput::rows(query(cx.ctx, cx.name(), &sql).await?))
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        _step: &str,
        period: Period,
    ) -> Result<String, RunError> {
        Ok(profile_sql(self.0, period.start(), period.end()))
    }
}
