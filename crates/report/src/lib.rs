//! The insight report: one self-contained HTML file (no scripts, fonts or images fetched —
//! charts are inline SVG), so it can be mailed, archived with the run and opened offline.
//!
//! Rendering only: the engine gathers the numbers ([`Report`]) with DataFusion.

use std::fmt::Write as _;

mod trends;

pub use trends::{Kpi, Migration, MigrationCell, Shift, Stability, TrendReport, render_trends};

/// One bar: a label, the customers it stands for, and the best segment's index (100 = as
/// common among the best customers as among all).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub customers: u64,
    pub share: f64,
    pub best_index: Option<f64>,
}

/// Customers by the values of one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    pub attribute: String,
    pub bars: Vec<Bar>,
}

/// Match rates of one enrichment step.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRates {
    pub step: String,
    pub rows: u64,
    /// `(level, matched rows, rate)`.
    pub levels: Vec<(String, u64, f64)>,
    pub unmatched: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub title: String,
    pub pipeline: String,
    pub period: String,
    pub customers: u64,
    pub best_segments: Vec<String>,
    pub best_customers: u64,
    pub segments: Distribution,
    pub distributions: Vec<Distribution>,
    pub match_rates: Vec<MatchRates>,
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

const BAR_HEIGHT: usize = 22;
const LABEL_WIDTH: usize = 180;
const PLOT_WIDTH: usize = 360;

/// A horizontal bar chart of customer shares, each bar labelled with its count, share and
/// (when known) the best segment's index; bars with index ≥ 120 are highlighted.
fn bar_chart(id: &str, d: &Distribution) -> String {
    let max = d
        .bars
        .iter()
        .map(|b| b.share)
        .fold(0.0_f64, f64::max)
        .max(1e-12);
    let height = d.bars.len() * BAR_HEIGHT + 10;
    let width = LABEL_WIDTH + PLOT_WIDTH + 220;
    let mut svg = format!(
        r#"<svg class="chart" data-chart="{id}" role="img" aria-label="Customers by {attr}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">"#,
        attr = escape(&d.attribute),
    );
    for (i, bar) in d.bars.iter().enumerate() {
        let y = i * BAR_HEIGHT + 5;
        let w = (bar.share / max * PLOT_WIDTH as f64).round().max(1.0);
        let over = bar.best_index.is_some_and(|x| x >= 120.0);
        let index = bar
            .best_index
            .map_or_else(String::new, |x| format!(" · index {x:.0}"));
        let _ = write!(
            svg,
            r#"<g class="bar{cls}" data-label="{label}" data-customers="{customers}"><text x="{lx}" y="{ty}" text-anchor="end">{label}</text><rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}"/><text x="{vx}" y="{ty}">{customers} ({pct:.1}%){index}</text></g>"#,
            cls = if over { " over" } else { "" },
            label = escape(&bar.label),
            customers = bar.customers,
            lx = LABEL_WIDTH - 8,
            ty = y + 15,
            x = LABEL_WIDTH,
            h = BAR_HEIGHT - 6,
            fill = if over { "#c0392b" } else { "#2e86c1" },
            vx = LABEL_WIDTH as f64 + w + 6.0,
            pct = bar.share * 100.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The page's opening: the shared stylesheet and the title. Both reports start here, so
/// they look alike and stay self-contained.
pub(crate) fn page_start(title: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }} h3 {{ font-size: 1em; }}
svg text {{ font-size: 12px; font-family: sans-serif; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.note {{ color: #555; font-size: 0.9em; }}
.up {{ color: #1e8449; }} .down {{ color: #c0392b; }} .flat {{ color: #777; }}
.flag {{ padding: 1px 6px; border-radius: 3px; color: #fff; }}
.flag.stable {{ background: #1e8449; }} .flag.watch {{ background: #d68910; }} .flag.shifted {{ background: #c0392b; }}
.not-comparable {{ color: #a04000; }}
</style></head><body>
<h1>{title}</h1>
"#,
        title = escape(title)
    )
}

pub fn render(r: &Report) -> String {
    let mut html = page_start(&r.title);
    let _ = write!(
        html,
        r#"<p class="summary">Pipeline <b>{pipeline}</b>, period <b>{period}</b>: <span id="customers">{customers}</span> customers,
<span id="best-customers">{best}</span> in the best segment ({best_names}).</p>
<p class="note">Bars show each group's share of all customers. The index compares the group's share among the best
customers with its share among all customers (100 = average); groups with index 120 or more are red.</p>
"#,
        pipeline = escape(&r.pipeline),
        period = escape(&r.period),
        customers = r.customers,
        best = r.best_customers,
        best_names = escape(&r.best_segments.join(", ")),
    );
    let _ = write!(
        html,
        "<h2>Segments</h2>\n{}\n",
        bar_chart("segments", &r.segments)
    );
    for d in &r.distributions {
        let _ = write!(
            html,
            "<h2>Customers by {attr}</h2>\n{chart}\n",
            attr = escape(&d.attribute),
            chart = bar_chart(&format!("by-{}", slug(&d.attribute)), d),
        );
        let mut over: Vec<&Bar> = d
            .bars
            .iter()
            .filter(|b| b.best_index.is_some_and(|x| x >= 120.0))
            .collect();
        over.sort_by(|a, b| {
            b.best_index
                .partial_cmp(&a.best_index)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        if !over.is_empty() {
            let names: Vec<String> = over
                .iter()
                .map(|b| {
                    format!(
                        "{} (index {:.0})",
                        escape(&b.label),
                        b.best_index.unwrap_or_default()
                    )
                })
                .collect();
            let _ = writeln!(
                html,
                "<p class=\"over\" data-attribute=\"{}\">Over-represented among the best customers: {}.</p>",
                escape(&d.attribute),
                names.join(", ")
            );
        }
    }
    if !r.match_rates.is_empty() {
        html.push_str("<h2>Match rates</h2>\n<table class=\"match-rates\"><tr><th>step</th><th>level</th><th>matched</th><th>rate</th></tr>\n");
        for m in &r.match_rates {
            for (level, matched, rate) in &m.levels {
                let _ = writeln!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{matched}</td><td>{:.1}%</td></tr>",
                    escape(&m.step),
                    escape(level),
                    rate * 100.0
                );
            }
            let unmatched_rate = if m.rows == 0 {
                0.0
            } else {
                m.unmatched as f64 / m.rows as f64
            };
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>unmatched</td><td>{}</td><td>{:.1}%</td></tr>",
                escape(&m.step),
                m.unmatched,
                unmatched_rate * 100.0
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_labels_and_mark_over_represented_groups() {
        let d = Distribution {
            attribute: "region".into(),
            bars: vec![
                Bar {
                    label: "North <&>".into(),
                    customers: 30,
                    share: 0.6,
                    best_index: Some(150.0),
                },
                Bar {
                    label: "South".into(),
                    customers: 20,
                    share: 0.4,
                    best_index: Some(25.0),
                },
            ],
        };
        let r = Report {
            title: "T".into(),
            pipeline: "p".into(),
            period: "2025".into(),
            customers: 50,
            best_segments: vec!["Champions".into()],
            best_customers: 10,
            segments: Distribution {
                attribute: "segment".into(),
                bars: vec![],
            },
            distributions: vec![d],
            match_rates: vec![],
        };
        let html = render(&r);
        assert!(html.contains("North &lt;&amp;&gt;"));
        assert!(html.contains(
            r#"<g class="bar over" data-label="North &lt;&amp;&gt;" data-customers="30">"#
        ));
        assert!(html.contains("30 (60.0%) · index 150"));
        assert!(html.contains(
            "Over-represented among the best customers: North &lt;&amp;&gt; (index 150)."
        ));
        // Self-contained: the only URL is the SVG namespace.
        assert!(
            !html
                .replace("http://www.w3.org/2000/svg", "")
                .contains("http")
        );
    }
}
