//! `segflow demo`: bundled data, the shipped pipelines, nothing downloaded: the yearly
//! segmentation for the period, then the first month after it scored with the frozen models.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Datelike;
use segflow_engine::exit;
use segflow_spec::Period;

use crate::Exit;
use crate::args::{EngineOverrides, PipelineRef};

/// The shipped pipelines, compiled in so the demo works from any directory.
const YEARLY_PIPELINE: (&str, &str) = (
    "yearly_segmentation.yaml",
    include_str!("../../pipelines/yearly_segmentation.yaml"),
);
const MONTHLY_PIPELINE: (&str, &str) = (
    "monthly_scoring.yaml",
    include_str!("../../pipelines/monthly_scoring.yaml"),
);

/// Uses `pipelines/<name>` from the working directory (a checkout) when it is there,
/// otherwise writes the compiled-in copy next to the demo data.
fn pipeline_file(dir: &Path, (name, text): (&str, &str)) -> std::io::Result<PathBuf> {
    let shipped = Path::new("pipelines").join(name);
    if shipped.is_file() {
        return Ok(shipped);
    }
    let copy = dir.join(name);
    std::fs::write(&copy, text)?;
    Ok(copy)
}

pub(crate) async fn demo(dir: &Path, period: Period, arguments: Vec<String>) -> Result<Exit, Exit> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("error: {what}: {e}");
        Exit(exit::RUNTIME)
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(&format!("cannot create `{}`", dir.display()), &e))?;
    let dir =
        std::path::absolute(dir).map_err(|e| fail("cannot resolve the demo directory", &e))?;
    let data = dir.join("data");
    let files = segflow_datagen::generate(
        &data,
        &segflow_datagen::Scale::demo(),
        segflow_datagen::FileFormat::Csv,
    )
    .map_err(|e| fail("cannot generate demo data", &e))?;
    println!(
        "demo data: {} customers, {} orders in {}",
        files.customer_rows,
        files.order_rows,
        data.display()
    );
    let mut vars = BTreeMap::new();
    vars.insert("DATA_DIR".to_string(), data.display().to_string());
    vars.insert("OUT_DIR".to_string(), dir.join("out").display().to_string());
    let yearly = pipeline_file(&dir, YEARLY_PIPELINE)
        .map_err(|e| fail("cannot write the demo pipeline", &e))?;
    println!("pipeline:  {}", yearly.display());
    let yearly = PipelineRef {
        path: yearly,
        vars: vars.clone(),
    };
    let fitted = crate::commands::run(
        &yearly,
        period,
        &EngineOverrides::default(),
        arguments.clone(),
    )
    .await?;
    crate::commands::report(&yearly, period).await?;
    let Some(month) = first_month_after(period) else {
        return Ok(fitted);
    };
    let monthly = pipeline_file(&dir, MONTHLY_PIPELINE)
        .map_err(|e| fail("cannot write the demo pipeline", &e))?;
    println!(
        "pipeline:  {} (the {period} models, frozen)",
        monthly.display()
    );
    crate::commands::run(
        &PipelineRef {
            path: monthly,
            vars,
        },
        month,
        &EngineOverrides::default(),
        arguments,
    )
    .await
}

/// The month a yearly run's models are first applied to.
fn first_month_after(period: Period) -> Option<Period> {
    match period.grain() {
        segflow_spec::Grain::Year => Some(Period::month(period.end().year(), 1)),
        segflow_spec::Grain::Month => None,
    }
}
