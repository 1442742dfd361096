//! Seeded, deterministic demo and benchmark data: what a CRM and webshop export would hold
//! (customers, orders) plus a postal-code level geodemographic reference table.
//!
//! Every customer draws its behaviour from its own RNG stream (seed, customer number), so the
//! first N customers are the same whatever the total scale, and the same seed always gives the
//! same bytes.

mod model;
mod write;

pub use model::{Customer, Order, PostalArea};
pub use write::{FileFormat, GeneratedFiles, generate};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Scale {
    pub customers: usize,
    /// Average orders per customer over the whole history (the 1M/10M benchmark uses 10).
    pub orders_per_customer: f64,
    pub first_year: i32,
    pub last_year: i32,
    pub postal_areas: usize,
    pub seed: u64,
    /// A planted movement for trend tests: these customers stop buying, so their segments
    /// move in a known way.
    pub lapse: Option<Lapse>,
}

/// Every `every`-th customer (customer numbers divisible by `every`: `C0000010`, `C0000020`,
/// …) places no order on or after January 1 of `from_year`; everything else about them, and
/// every other customer, is exactly as without the lapse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lapse {
    pub from_year: i32,
    pub every: usize,
}

impl Lapse {
    /// Whether the customer numbered `number` (1-based, as in the id) lapses.
    pub fn applies_to(&self, number: usize) -> bool {
        self.every > 0 && number.is_multiple_of(self.every)
    }
}

impl Scale {
    /// The bundled demo: a few thousand customers over five years.
    pub fn demo() -> Self {
        Self {
            customers: 5_000,
            orders_per_customer: 10.0,
            first_year: 2021,
            last_year: 2025,
            postal_areas: 400,
            seed: 42,
            lapse: None,
        }
    }
}

/// Why data could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Csv {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("invalid scale: {0}")]
    Scale(String),
}
