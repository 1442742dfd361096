//! `segflow demo`: bundled data, the shipped pipeline, nothing downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use segflow_engine::exit;
use segflow_spec::Period;

use crate::Exit;
use crate::args::PipelineRef;

/// The shipped pipeline, compiled in so the demo works from any directory.
const YEARLY_PIPELINE: &str = include_str!("../../pipelines/yearly_segmentation.yaml");

/// Uses `pipelines/yearly_segmentation.yaml` from the working directory (a checkout) when it
/// is there, otherwise writes the compiled-in copy next to the demo data.
fn pipeline_file(dir: &Path) -> std::io::Result<PathBuf> {
    let shipped = PathBuf::from("pipelines/yearly_segmentation.yaml");
    if shipped.is_file() {
        return Ok(shipped);
    }
    let copy = dir.join("yearly_segmentation.yaml");
    std::fs::write(&copy, YEARLY_PIPELINE)?;
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
    let path = pipeline_file(&dir).map_err(|e| fail("cannot write the demo pipeline", &e))?;
    let mut vars = BTreeMap::new();
    vars.insert("DATA_DIR".to_string(), data.display().to_string());
    vars.insert("OUT_DIR".to_string(), dir.join("out").display().to_string());
    println!("pipeline:  {}", path.display());
    crate::commands::run(&PipelineRef { path, vars }, period, arguments).await
}
