//! Placeholder: filled in by the fit-time benchmark work.
fn main() {}
