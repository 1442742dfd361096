//! Typed specs of the segmentation model steps (`model: …`), and how a run finds their
//! fitted artifacts.

use chrono::NaiveDate;

use crate::diagnostic::{Location, Spanned};
use crate::period::Grain;

/// Whether model steps fit new parameters or apply a stored artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelMode {
    /// Fit in yearly runs, apply the latest yearly artifact in monthly runs.
    Auto,
    Fit,
    Apply,
}

/// The pipeline's `models:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsOptions {
    /// Root of the artifact store: `<dir>/<model name>/period=<period>/` holding version files
    /// `model-<sha256 prefix>.json` and the pointer `current.json`.
    pub dir: String,
    pub mode: ModelMode,
}

impl ModelsOptions {
    /// Whether a run at `grain` fits (true) or applies (false).
    pub fn fits(&self, grain: Grain) -> bool {
        match self.mode {
            ModelMode::Auto => grain == Grain::Year,
            ModelMode::Fit => true,
            ModelMode::Apply => false,
        }
    }
}

/// Which stored artifact a model step writes (when fitting) or reads (when applying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    /// The model's name in the store; the step name unless given.
    pub name: String,
    /// The artifact's period when applying; the latest yearly one before the run's period
    /// when `None`.
    pub period: Option<String>,
}

/// How RFM scores are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreMethod {
    /// Equal-size buckets by rank; ties broken by customer id so the result is deterministic.
    Ntile,
    /// Cut points on the values; equal values always share a score.
    Quantile,
    /// Cut points given in the pipeline.
    Cuts,
}

/// Explicit RFM cut points, increasing; `bins - 1` per measure.
#[derive(Debug, Clone, PartialEq)]
pub struct RfmCuts {
    pub recency: Vec<f64>,
    pub frequency: Vec<f64>,
    pub monetary: Vec<f64>,
}

/// How F is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrequencyMeasure {
    /// Distinct order ids.
    Orders,
    /// Distinct days with at least one order (for exports without order ids).
    PurchaseDays,
}

/// How M aggregates order amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonetaryMeasure {
    Sum,
    Mean,
}

/// An interval such as `3 years`, counted back from the reference date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookback {
    pub amount: u32,
    pub unit: LookbackUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookbackUnit {
    Days,
    Months,
    Years,
}

/// A named segment: the first rule whose `when` holds names the row; `when: None` is the
/// mandatory catch-all and must come last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRule {
    pub name: String,
    pub when: Option<String>,
    pub loc: Location,
}

/// Recency, frequency and monetary scores computed from an order table.
#[derive(Debug, Clone)]
pub struct RfmSpec {
    pub input: Spanned<String>,
    pub customer: String,
    pub date: String,
    pub order_id: Option<String>,
    pub amount: String,
    pub frequency: FrequencyMeasure,
    pub monetary: MonetaryMeasure,
    pub bins: u32,
    pub method: ScoreMethod,
    /// Set with `method: cuts`.
    pub cuts: Option<RfmCuts>,
    /// Only orders in `[reference_date - lookback, reference_date)` count; all before it if `None`.
    pub lookback: Option<Lookback>,
    /// Defaults to the period end.
    pub reference_date: Option<NaiveDate>,
    pub segments: Vec<SegmentRule>,
}

/// What the cumulative share of a Pareto ranking counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierBasis {
    /// Share of total value (the 80/20 rule: A holds 80% of revenue).
    Value,
    /// Share of customers (top 20% / next 30% / rest).
    Customers,
}

/// Pareto/ABC value tiers by cumulative share of value or of customers.
#[derive(Debug, Clone)]
pub struct ParetoSpec {
    pub input: Spanned<String>,
    pub customer: String,
    pub value: String,
    pub basis: TierBasis,
    /// `(tier, upper bound of the cumulative share before the customer)`, increasing.
    pub tiers: Vec<(String, f64)>,
    /// The tier of everything past the last bound.
    pub rest: String,
}

/// Where an axis of a matrix splits into low and high.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    /// The median of the fitted data (frozen in the artifact).
    Median,
    /// The mean of the fitted data.
    Mean,
    /// A fixed threshold.
    Value(f64),
}

/// One axis of a two-by-two matrix: a SQL expression over the input and its split.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Output column holding the expression's value.
    pub name: String,
    pub expr: String,
    pub split: Split,
}

/// Value × loyalty (or any two scores, e.g. survey needs) → four named cells. "High" means
/// strictly above the split.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSpec {
    pub input: Spanned<String>,
    pub key: String,
    pub x: Axis,
    pub y: Axis,
    /// Cell names for (x, y) = (high, high), (high, low), (low, high), (low, low).
    pub cells: [String; 4],
}

/// Ordered `when` rules → segment, over every column of the input.
#[derive(Debug, Clone)]
pub struct RulesSpec {
    pub input: Spanned<String>,
    pub segments: Vec<SegmentRule>,
}

/// k-means (numeric features only) or k-prototypes (with categorical features).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    pub input: Spanned<String>,
    pub key: String,
    pub numeric: Vec<String>,
    pub categorical: Vec<String>,
    pub k: u32,
    pub seed: u64,
    pub restarts: u32,
    pub max_iterations: u32,
    /// Weight of one categorical mismatch against squared z-distance (k-prototypes' gamma).
    pub categorical_weight: Option<f64>,
}

/// The unit in which BG/NBD measures time (CDNOW's published fit uses weeks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Days,
    Weeks,
}

impl TimeUnit {
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Days => 1.0,
            TimeUnit::Weeks => 7.0,
        }
    }
}

/// Customer lifetime value: historical margin plus BG/NBD + Gamma-Gamma predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct ClvSpec {
    pub input: Spanned<String>,
    pub customer: String,
    pub date: String,
    pub amount: String,
    /// SQL expression of an order's margin for historical CLV; the amount when `None`.
    pub margin: Option<String>,
    /// Last day whose orders count (inclusive); the period's last day when `None`.
    pub observation_end: Option<NaiveDate>,
    pub time_unit: TimeUnit,
    /// Horizon of `expected_purchases`, in `time_unit`s.
    pub horizon: f64,
    /// Months of discounted CLV.
    pub clv_months: u32,
    pub monthly_discount: f64,
    /// Share of spend that is margin, for predictive CLV.
    pub margin_rate: f64,
    /// Churn risk when P(alive) is below this.
    pub churn_below: f64,
    /// Churn risk also when the last purchase is more than this many days before the end.
    pub churn_after_days: Option<u32>,
}

/// How prospects are scored against the best segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookalikeMethod {
    /// Mean over-representation index of the prospect's attribute values.
    Index,
    /// Closeness to the best segment's centroid in z-scored numeric features.
    Centroid,
}

/// Twins of the best customers: scores a prospect/market table.
#[derive(Debug, Clone, PartialEq)]
pub struct LookalikeSpec {
    /// Scored customers: one row per customer with a segment column and the attributes.
    pub customers: Spanned<String>,
    pub prospects: Spanned<String>,
    /// Key of a prospect row.
    pub key: String,
    pub segment: String,
    /// Segment values that count as "best".
    pub best: Vec<String>,
    pub attributes: Vec<String>,
    pub method: LookalikeMethod,
    /// Attribute values seen on fewer customers get index 100 (no evidence either way).
    pub min_customers: u64,
}

/// B2B potential: a linear regression of customer value on firmographics, applied to the
/// market.
#[derive(Debug, Clone, PartialEq)]
pub struct PotentialSpec {
    pub customers: Spanned<String>,
    pub market: Spanned<String>,
    /// Key shared by both tables (organisation number).
    pub key: String,
    pub target: String,
    pub numeric: Vec<String>,
    pub categorical: Vec<String>,
}

/// How the vintages of a reference source are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VintageBy {
    /// A column holding the vintage label (`2024`, `2024-06`, `2024-06-30`).
    Column(String),
    /// A hive-style directory level, e.g. `vintage=2024/` for `Directory("vintage")`.
    Directory(String),
}

/// A reference source published in vintages; a run reads the one in effect for its period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VintageSpec {
    pub by: VintageBy,
    /// A fixed vintage instead of the latest one in effect.
    pub fixed: Option<String>,
}

/// How a join key is normalized before matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalizer {
    /// Canonical postal code of `country`.
    PostalCode,
    /// The postal area (Nordic/US prefix, UK outward code) of a postal code.
    PostalArea,
    /// Upper case, punctuation and whitespace folded, abbreviations written out.
    Address,
    /// Organisation number with its check digit verified (SE, DK).
    OrgNumber,
    /// Trimmed text, compared as is.
    Exact,
}

/// One level of an enrichment join: the first level whose key matches names the row's
/// `match_level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinKey {
    pub level: String,
    /// Column of the input holding the key.
    pub input: String,
    /// Reference table of this level.
    pub reference: Spanned<String>,
    /// Column of the reference table holding the key.
    pub key: String,
    pub normalize: Normalizer,
}

/// Re-codes a classification column of the reference data (e.g. 2014 Mosaic types into
/// the 2024 generation) so periods before and after a model change compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crosswalk {
    pub table: Spanned<String>,
    /// The reference column to re-code.
    pub column: String,
    /// Crosswalk columns: old code → new code. Codes without a row are kept.
    pub from: String,
    pub to: String,
}

/// Joins a table with reference data through ordered fallback keys.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichSpec {
    pub input: Spanned<String>,
    /// Country whose postal-code and organisation-number rules apply.
    pub country: Option<String>,
    pub keys: Vec<JoinKey>,
    /// Reference columns added to every input row (NULL when no level matched).
    pub columns: Vec<String>,
    /// Share of rows that must match at some level.
    pub min_match_rate: Option<(f64, crate::pipeline::Severity)>,
    pub crosswalk: Option<Crosswalk>,
    /// Output column naming each row's match level (`match_level` unless given; chained
    /// enrichments need distinct names).
    pub match_column: String,
}

/// Orders behind a profile's order KPIs (average order value, orders per customer, category
/// mix), counted within the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOrders {
    pub table: Spanned<String>,
    pub customer: String,
    pub amount: String,
    pub order_id: Option<String>,
    pub date: String,
    pub category: Option<String>,
}

/// A market or population table for penetration: households (or companies) per value of
/// the profile's `by` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileMarket {
    pub table: Spanned<String>,
    pub by: String,
    pub households: String,
}

/// KPIs per segment (and per segment × attribute value), with indexes against all customers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSpec {
    /// One row per customer with the segment and attributes.
    pub customers: Spanned<String>,
    pub key: String,
    pub segment: String,
    pub by: Option<String>,
    pub revenue: Option<String>,
    pub margin: Option<String>,
    pub acquisition_cost: Option<String>,
    pub orders: Option<ProfileOrders>,
    pub market: Option<ProfileMarket>,
}

/// A trend pipeline's `report:` block (`trends: { migration, stability, kpis, shift }`): the
/// outputs its trend steps write, which `segflow report` charts. At least one is named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrendReportSpec {
    pub migration: Option<Spanned<String>>,
    pub stability: Option<Spanned<String>>,
    pub kpis: Option<Spanned<String>>,
    pub shift: Option<Spanned<String>>,
    pub title: Option<String>,
}

impl TrendReportSpec {
    /// `(key, output)` of every table named, in the order above.
    pub fn outputs(&self) -> Vec<(&'static str, &Spanned<String>)> {
        [
            ("migration", &self.migration),
            ("stability", &self.stability),
            ("kpis", &self.kpis),
            ("shift", &self.shift),
        ]
        .into_iter()
        .filter_map(|(key, o)| o.as_ref().map(|o| (key, o)))
        .collect()
    }
}

/// The pipeline's `report:` block: what `segflow report` charts for a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSpec {
    /// An output with one row per customer.
    pub customers: Spanned<String>,
    pub segment: String,
    /// Segment values that make up the best segment.
    pub best: Vec<String>,
    /// Attributes whose distributions are charted (region, income band, geodemographic group).
    pub by: Vec<String>,
    pub title: Option<String>,
}
