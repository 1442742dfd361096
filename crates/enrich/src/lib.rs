//! Enrichment: a company's customers joined with external reference data (geodemographic,
//! firmographic, behavioural tables) by keys that are normalized per country first, falling
//! back from fine keys to coarse ones (household → address → postal code → postal area), with
//! every row's match level recorded.
//!
//! This crate holds what is segflow's own — the normalization rules and the join SQL; the
//! engine registers the normalizers as DataFusion functions and runs the SQL.

pub mod join;
pub mod normalize;
pub mod vintage;
