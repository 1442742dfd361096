//! Writing generated data as CSV exports or Parquet.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::model::{Customer, Order, PostalArea, customer, postal_areas};
use crate::{GenError, Scale};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Parquet,
}

/// Where the generated files are and how many rows each has.
#[derive(Debug, Clone)]
pub struct GeneratedFiles {
    pub customers: PathBuf,
    pub orders: PathBuf,
    pub geodemographics: PathBuf,
    pub customer_rows: usize,
    pub order_rows: usize,
}

const CHUNK: usize = 500_000;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GenError + '_ {
    move |source| GenError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN)).num_days() as i32
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

/// One writer per table, CSV or Parquet, fed in chunks so any scale streams through memory.
enum TableWriter {
    Csv(csv::Writer<BufWriter<File>>, PathBuf),
    Parquet(ArrowWriter<BufWriter<File>>, SchemaRef, PathBuf),
}

impl TableWriter {
    fn create(path: PathBuf, format: FileFormat, schema: SchemaRef) -> Result<Self, GenError> {
        let file = BufWriter::new(File::create(&path).map_err(io_err(&path))?);
        Ok(match format {
            FileFormat::Csv => {
                let mut w = csv::Writer::from_writer(file);
                w.write_record(schema.fields().iter().map(|f| f.name().as_str()))
                    .map_err(|source| GenError::Csv {
                        path: path.display().to_string(),
                        source,
                    })?;
                TableWriter::Csv(w, path)
            }
            FileFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                let w = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props)).map_err(
                    |source| GenError::Parquet {
                        path: path.display().to_string(),
                        source,
                    },
                )?;
                TableWriter::Parquet(w, schema, path)
            }
        })
    }

    fn write(
        &mut self,
        rows: Vec<Vec<String>>,
        columns: impl FnOnce() -> Vec<ArrayRef>,
    ) -> Result<(), GenError> {
        match self {
            TableWriter::Csv(w, path) => {
                for row in rows {
                    w.write_record(&row).map_err(|source| GenError::Csv {
                        path: path.display().to_string(),
                        source,
                    })?;
                }
            }
            TableWriter::Parquet(w, schema, path) => {
                let batch = RecordBatch::try_new(Arc::clone(schema), columns()).map_err(|e| {
                    GenError::Parquet {
                        path: path.display().to_string(),
                        source: e.into(),
                    }
                })?;
                w.write(&batch).map_err(|source| GenError::Parquet {
                    path: path.display().to_string(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(), GenError> {
        match self {
            TableWriter::Csv(mut w, path) => w.flush().map_err(io_err(&path)),
            TableWriter::Parquet(w, _, path) => {
                w.close().map(|_| ()).map_err(|source| GenError::Parquet {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
    }
}

fn customer_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
        Field::new("postal_code", DataType::Utf8, false),
        Field::new("birth_year", DataType::Int32, false),
        Field::new("signup_date", DataType::Date32, false),
        Field::new("channel", DataType::Utf8, false),
    ]))
}

fn order_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("order_date", DataType::Date32, false),
        Field::new("amount", DataType::Decimal128(12, 2), false),
        Field::new("category", DataType::Utf8, false),
    ]))
}

fn write_customers(w: &mut TableWriter, chunk: &[Customer]) -> Result<(), GenError> {
    let rows = if matches!(w, TableWriter::Csv(..)) {
        chunk
            .iter()
            .map(|c| {
                vec![
                    c.customer_id.clone(),
                    c.email.clone(),
                    c.postal_code.clone(),
                    c.birth_year.to_string(),
                    c.signup_date.to_string(),
                    c.channel.to_string(),
                ]
            })
            .collect()
    } else {
        Vec::new()
    };
    w.write(rows, || {
        vec![
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|c| c.customer_id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|c| c.email.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|c| c.postal_code.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                chunk.iter().map(|c| c.birth_year),
            )),
            Arc::new(Date32Array::from_iter_values(
                chunk.iter().map(|c| days(c.signup_date)),
            )),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|c| c.channel),
            )),
        ]
    })
}

fn write_orders(w: &mut TableWriter, chunk: &[Order]) -> Result<(), GenError> {
    let rows = if matches!(w, TableWriter::Csv(..)) {
        chunk
            .iter()
            .map(|o| {
                vec![
                    o.order_id.to_string(),
                    o.customer_id.clone(),
                    o.order_date.to_string(),
                    cents(o.amount_cents),
                    o.category.to_string(),
                ]
            })
            .collect()
    } else {
        Vec::new()
    };
    w.write(rows, || {
        let amounts =
            Decimal128Array::from_iter_values(chunk.iter().map(|o| i128::from(o.amount_cents)))
                .with_precision_and_scale(12, 2)
                .unwrap_or_else(|_| Decimal128Array::from(Vec::<i128>::new()));
        vec![
            Arc::new(Int64Array::from_iter_values(
                chunk.iter().map(|o| o.order_id),
            )),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|o| o.customer_id.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(
                chunk.iter().map(|o| days(o.order_date)),
            )),
            Arc::new(amounts),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|o| o.category),
            )),
        ]
    })
}

fn write_geodemographics(path: &Path, areas: &[PostalArea]) -> Result<(), GenError> {
    let csv_err = |source| GenError::Csv {
        path: path.display().to_string(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    w.write_record([
        "postal_code",
        "region",
        "geo_group",
        "geo_type",
        "median_income",
        "households",
    ])
    .map_err(csv_err)?;
    for a in areas {
        w.write_record([
            a.postal_code.as_str(),
            a.region,
            &a.geo_group,
            &a.geo_type,
            &a.median_income.to_string(),
            &a.households.to_string(),
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(io_err(path))
}

/// Writes `crm/customers.*`, `crm/orders.*` and `reference/geodemographics.csv` under `dir`.
pub fn generate(dir: &Path, scale: &Scale, format: FileFormat) -> Result<GeneratedFiles, GenError> {
    if scale.customers == 0 || scale.postal_areas == 0 || scale.postal_areas > 89_000 {
        return Err(GenError::Scale(
            "need customers >= 1 and 1..=89000 postal areas".into(),
        ));
    }
    if scale.first_year > scale.last_year {
        return Err(GenError::Scale("first year after last year".into()));
    }
    let ext = match format {
        FileFormat::Csv => "csv",
        FileFormat::Parquet => "parquet",
    };
    let crm = dir.join("crm");
    let reference = dir.join("reference");
    for d in [&crm, &reference] {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let areas = postal_areas(scale);
    let files = GeneratedFiles {
        customers: crm.join(format!("customers.{ext}")),
        orders: crm.join(format!("orders.{ext}")),
        geodemographics: reference.join("geodemographics.csv"),
        customer_rows: scale.customers,
        order_rows: 0,
    };
    write_geodemographics(&files.geodemographics, &areas)?;
    let mut cw = TableWriter::create(files.customers.clone(), format, customer_schema())?;
    let mut ow = TableWriter::create(files.orders.clone(), format, order_schema())?;
    let (mut customers, mut orders) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
    let mut next_order_id = 1_i64;
    for i in 0..scale.customers {
        let (c, mut os) = customer(scale, i, &areas);
        for o in &mut os {
            o.order_id = next_order_id;
            next_order_id += 1;
        }
        customers.push(c);
        orders.extend(os);
        if customers.len() >= CHUNK {
            write_customers(&mut cw, &customers)?;
            customers.clear();
        }
        if orders.len() >= CHUNK {
            write_orders(&mut ow, &orders)?;
            orders.clear();
        }
    }
    write_customers(&mut cw, &customers)?;
    write_orders(&mut ow, &orders)?;
    cw.finish()?;
    ow.finish()?;
    Ok(GeneratedFiles {
        order_rows: (next_order_id - 1) as usize,
        ..files
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let dir = tempfile::tempdir().expect("tmp");
        let scale = Scale {
            customers: 200,
            ..Scale::demo()
        };
        let a = generate(&dir.path().join("a"), &scale, FileFormat::Csv).expect("a");
        let b = generate(&dir.path().join("b"), &scale, FileFormat::Csv).expect("b");
        let read = |p: &Path| std::fs::read(p).expect("read");
        assert_eq!(read(&a.orders), read(&b.orders));
        assert_eq!(read(&a.customers), read(&b.customers));
        let text = String::from_utf8(read(&a.orders)).expect("utf8");
        assert_eq!(text.lines().count(), a.order_rows + 1);
        assert!(text.starts_with("order_id,customer_id,order_date,amount,category\n1,C"));
    }
}
