//! Comparing segmentations across periods, without DataFusion: the population stability index,
//! which parts of a model artifact define its segments (a change there makes two periods
//! incomparable) and which were merely refitted (a shift to report), and period-over-period
//! changes. The engine's trend steps gather the counts and artifacts; this crate judges them.

pub mod change;
pub mod definition;
pub mod psi;

pub use change::Change;
pub use definition::{ModelView, definition_changes};
pub use psi::{Flag, population_stability, quantile_ranks};
