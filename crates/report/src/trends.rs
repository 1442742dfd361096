//! The trend report: how segments moved across periods, from the tables a trend pipeline's
//! steps write (migration, stability, kpis, shift). Same page shell as the segment report;
//! charts are inline SVG, tables plain HTML, and every pair of periods that was not comparable
//! is listed with its reason, so nothing is compared silently.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::{escape, page_start, slug};

/// One row of a migration table: customers that were in `from` in `period_from` and in `to`
/// in `period_to` (`(new)`: absent before; `(lost)`: absent after).
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationCell {
    pub from: String,
    pub to: String,
    pub customers: i64,
    /// Of the customers of the `from` row.
    pub share: f64,
}

/// The migration matrix of one segmentation between two periods.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub segmentation: String,
    /// `previous` or `first`.
    pub basis: String,
    pub period_from: String,
    pub period_to: String,
    pub cells: Vec<MigrationCell>,
    pub comparable: bool,
    pub reason: Option<String>,
}

/// One KPI of one segment in one period, with its changes (relative ones as fractions).
#[derive(Debug, Clone, PartialEq)]
pub struct Kpi {
    pub segmentation: String,
    pub segment: String,
    pub period: String,
    pub metric: String,
    pub value: Option<f64>,
    pub previous: Option<f64>,
    pub change_previous: Option<f64>,
    pub change_previous_pct: Option<f64>,
    pub first: Option<f64>,
    pub change_first: Option<f64>,
    pub change_first_pct: Option<f64>,
    pub comparable: bool,
    pub reason: Option<String>,
}

/// PSI of the segment mix or of one model feature between two periods.
#[derive(Debug, Clone, PartialEq)]
pub struct Stability {
    pub basis: String,
    pub period_from: String,
    pub period_to: String,
    pub measure: String,
    /// `segments` or `feature`.
    pub kind: String,
    pub psi: Option<f64>,
    /// `stable`, `watch` or `shifted`.
    pub flag: String,
    pub comparable: bool,
    pub reason: Option<String>,
}

/// How one fitted parameter (a cut point, a threshold, a centroid coordinate) moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    pub model: String,
    pub kind: String,
    pub period_from: String,
    pub period_to: String,
    pub parameter: String,
    pub value_from: Option<f64>,
    pub value_to: Option<f64>,
    pub change: Option<f64>,
    pub change_pct: Option<f64>,
    pub comparable: bool,
    pub reason: Option<String>,
}

/// Everything the trend report shows; tables the pipeline does not name are empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrendReport {
    pub title: String,
    pub pipeline: String,
    pub period: String,
    pub migrations: Vec<Migration>,
    pub stability: Vec<Stability>,
    pub kpis: Vec<Kpi>,
    pub shifts: Vec<Shift>,
}

const NEW: &str = "(new)";
const LOST: &str = "(lost)";
/// Segment colours, in order of first appearance (the segment report's blue first).
const PALETTE: [&str; 10] = [
    "#2e86c1", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d4ac0d", "#7f8c8d",
    "#2c3e50", "#e84393",
];

/// Distinct values in order of first appearance.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    values
        .filter(|v| seen.insert(*v))
        .map(str::to_string)
        .collect()
}

/// `1234`, `12.50`; `–` for a missing value.
fn number(v: Option<f64>) -> String {
    match v {
        None => "–".to_string(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// A fraction as a signed percentage: `+12.5%`.
fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{:+.1}%", x * 100.0))
}

/// `up` ▲, `down` ▼ or `flat` –, for a change.
fn mark(change: Option<f64>) -> (&'static str, &'static str) {
    match change {
        Some(c) if c > 0.0 => ("up", "▲"),
        Some(c) if c < 0.0 => ("down", "▼"),
        _ => ("flat", "–"),
    }
}

const SIZE_PLOT_HEIGHT: usize = 220;
const SIZE_COLUMN_WIDTH: usize = 70;

/// Customers per segment and period, stacked: one column per period, taken from the
/// `customers` KPI.
fn sizes_chart(segmentation: &str, kpis: &[&Kpi]) -> String {
    let periods = distinct(kpis.iter().map(|k| k.period.as_str()));
    let segments = distinct(kpis.iter().map(|k| k.segment.as_str()));
    let total = |p: &str| -> f64 {
        kpis.iter()
            .filter(|k| k.period == p)
            .filter_map(|k| k.value)
            .sum()
    };
    let max = periods
        .iter()
        .map(|p| total(p))
        .fold(0.0_f64, f64::max)
        .max(1e-12);
    let legend_x = 50 + periods.len() * SIZE_COLUMN_WIDTH + 20;
    let width = legend_x + 200;
    let height = SIZE_PLOT_HEIGHT.max(segments.len() * 18) + 54;
    let mut svg = format!(
        r#"<svg class="chart" data-chart="sizes-{id}" role="img" aria-label="Segment sizes by period: {seg}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">"#,
        id = slug(segmentation),
        seg = escape(segmentation),
    );
    for (i, period) in periods.iter().enumerate() {
        let x = 50 + i * SIZE_COLUMN_WIDTH;
        let mut y = SIZE_PLOT_HEIGHT as f64 + 24.0;
        for (s, segment) in segments.iter().enumerate() {
            let Some(n) = kpis
                .iter()
                .find(|k| &k.period == period && &k.segment == segment)
                .and_then(|k| k.value)
            else {
                continue;
            };
            let h = n / max * SIZE_PLOT_HEIGHT as f64;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect class="size" data-period="{p}" data-segment="{sg}" data-customers="{n}" x="{x}" y="{y:.1}" width="{w}" height="{h:.1}" fill="{fill}"><title>{sg} {p}: {n}</title></rect>"#,
                p = escape(period),
                sg = escape(segment),
                n = number(Some(n)),
                w = SIZE_COLUMN_WIDTH - 16,
                fill = PALETTE[s % PALETTE.len()],
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{cx}" y="{ly}" text-anchor="middle">{p}</text><text class="total" x="{cx}" y="{ty:.1}" text-anchor="middle">{n}</text>"#,
            cx = x + (SIZE_COLUMN_WIDTH - 16) / 2,
            ly = SIZE_PLOT_HEIGHT + 40,
            p = escape(period),
            ty = y - 4.0,
            n = number(Some(total(period))),
        );
    }
    for (s, segment) in segments.iter().enumerate() {
        let y = 12 + s * 18;
        let _ = write!(
            svg,
            r#"<rect x="{legend_x}" y="{y}" width="12" height="12" fill="{fill}"/><text x="{tx}" y="{ty}">{sg}</text>"#,
            fill = PALETTE[s % PALETTE.len()],
            tx = legend_x + 18,
            ty = y + 10,
            sg = escape(segment),
        );
    }
    svg.push_str("</svg>");
    svg
}

const CELL_WIDTH: usize = 92;
const CELL_HEIGHT: usize = 34;
const ROW_LABEL_WIDTH: usize = 130;

/// Rows `from` (the `(new)` row last), columns `to` (the `(lost)` column last); a cell's
/// shade is its row share, its text the customers and the share.
fn heat_map(m: &Migration) -> String {
    let mut rows = distinct(m.cells.iter().map(|c| c.from.as_str()));
    let mut cols = distinct(m.cells.iter().map(|c| c.to.as_str()));
    // Every segment on both axes, so the diagonal (stayed) lines up.
    for segment in rows.clone() {
        if segment != NEW && !cols.contains(&segment) {
            cols.push(segment);
        }
    }
    for segment in cols.clone() {
        if segment != LOST && !rows.contains(&segment) {
            rows.push(segment);
        }
    }
    rows.retain(|r| r != NEW);
    rows.push(NEW.to_string());
    cols.retain(|c| c != LOST);
    cols.push(LOST.to_string());
    let width = ROW_LABEL_WIDTH + cols.len() * CELL_WIDTH + 10;
    let height = 30 + rows.len() * CELL_HEIGHT + 10;
    let id = format!(
        "migration-{}-{}-{}-{}",
        slug(&m.segmentation),
        slug(&m.basis),
        slug(&m.period_from),
        slug(&m.period_to)
    );
    let mut svg = format!(
        r#"<svg class="chart heat-map{nc}" data-chart="{id}" role="img" aria-label="Migration {seg} {from} to {to}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">"#,
        nc = if m.comparable { "" } else { " not-comparable" },
        seg = escape(&m.segmentation),
        from = escape(&m.period_from),
        to = escape(&m.period_to),
    );
    for (j, col) in cols.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text class="column" x="{x}" y="20" text-anchor="middle">{c}</text>"#,
            x = ROW_LABEL_WIDTH + j * CELL_WIDTH + CELL_WIDTH / 2,
            c = escape(col),
        );
    }
    let colour = if m.comparable { "#2e86c1" } else { "#7f8c8d" };
    for (i, row) in rows.iter().enumerate() {
        let y = 30 + i * CELL_HEIGHT;
        let _ = write!(
            svg,
            r#"<text class="row" x="{x}" y="{ty}" text-anchor="end">{r}</text>"#,
            x = ROW_LABEL_WIDTH - 8,
            ty = y + CELL_HEIGHT / 2 + 4,
            r = escape(row),
        );
        for (j, col) in cols.iter().enumerate() {
            let x = ROW_LABEL_WIDTH + j * CELL_WIDTH;
            let cell = m.cells.iter().find(|c| &c.from == row && &c.to == col);
            let (customers, share) = cell.map_or((0, 0.0), |c| (c.customers, c.share));
            let _ = write!(
                svg,
                r##"<g class="cell" data-from="{r}" data-to="{c}" data-customers="{customers}" data-share="{share:.4}"><rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{colour}" fill-opacity="{o:.3}" stroke="#fff"/><text x="{tx}" y="{ty}" text-anchor="middle" fill="{tc}">{customers} · {pct:.1}%</text></g>"##,
                r = escape(row),
                c = escape(col),
                w = CELL_WIDTH,
                h = CELL_HEIGHT,
                o = 0.06 + 0.94 * share.clamp(0.0, 1.0),
                tx = x + CELL_WIDTH / 2,
                ty = y + CELL_HEIGHT / 2 + 4,
                tc = if share > 0.55 { "#fff" } else { "#222" },
                pct = share * 100.0,
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Stacked sizes per segmentation (from the `customers` KPI of every period).
fn sizes_section(html: &mut String, kpis: &[Kpi]) {
    let customers: Vec<&Kpi> = kpis.iter().filter(|k| k.metric == "customers").collect();
    if customers.is_empty() {
        return;
    }
    html.push_str("<h2>Segment sizes over the periods</h2>\n");
    for segmentation in distinct(customers.iter().map(|k| k.segmentation.as_str())) {
        let of: Vec<&Kpi> = customers
            .iter()
            .copied()
            .filter(|k| k.segmentation == segmentation)
            .collect();
        let _ = writeln!(
            html,
            "<h3>{}</h3>\n{}",
            escape(&segmentation),
            sizes_chart(&segmentation, &of)
        );
    }
}

fn migration_section(html: &mut String, migrations: &[Migration]) {
    if migrations.is_empty() {
        return;
    }
    html.push_str("<h2>Migration between periods</h2>\n<p class=\"note\">Rows: segment in the earlier period ((new): not a customer then); columns: segment in the later one ((lost): not a customer any more). Each cell: customers · share of its row.</p>\n");
    for m in migrations {
        let basis = if m.basis == "first" {
            " (versus the first period)"
        } else {
            ""
        };
        let _ = writeln!(
            html,
            "<h3>{} {} → {}{basis}</h3>",
            escape(&m.segmentation),
            escape(&m.period_from),
            escape(&m.period_to)
        );
        if !m.comparable {
            let _ = writeln!(
                html,
                "<p class=\"not-comparable\">Not comparable: {}.</p>",
                escape(m.reason.as_deref().unwrap_or("no reason given"))
            );
        }
        html.push_str(&heat_map(m));
        html.push('\n');
    }
}

/// The KPIs of the latest period in the table (the report's period when present), per
/// segmentation, with their changes marked up or down.
fn kpi_section(html: &mut String, kpis: &[Kpi], period: &str) {
    let shown_period = if kpis.iter().any(|k| k.period == period) {
        period.to_string()
    } else {
        match kpis.iter().map(|k| &k.period).max() {
            Some(p) => p.clone(),
            None => return,
        }
    };
    let _ = writeln!(
        html,
        "<h2>KPI changes, {}</h2>\n<p class=\"note\">▲ up, ▼ down; relative changes in percent.</p>",
        escape(&shown_period)
    );
    let rows: Vec<&Kpi> = kpis.iter().filter(|k| k.period == shown_period).collect();
    for segmentation in distinct(rows.iter().map(|k| k.segmentation.as_str())) {
        let _ = writeln!(
            html,
            "<h3>{seg}</h3>\n<table class=\"kpis\" data-segmentation=\"{seg}\"><tr><th>segment</th><th>metric</th><th>value</th><th>previous</th><th>change</th><th>change %</th><th>first</th><th>change vs first</th><th>change vs first %</th></tr>",
            seg = escape(&segmentation)
        );
        for k in rows.iter().filter(|k| k.segmentation == segmentation) {
            let (prev_class, prev_mark) = mark(k.change_previous);
            let (first_class, first_mark) = mark(k.change_first);
            let _ = writeln!(
                html,
                "<tr class=\"kpi{nc}\" data-segment=\"{sg}\" data-metric=\"{mt}\"><td>{sg}</td><td>{mt}</td><td>{v}</td><td>{p}</td><td class=\"{prev_class}\" data-mark=\"{prev_class}\">{prev_mark} {cp}</td><td class=\"{prev_class}\">{cpp}</td><td>{f}</td><td class=\"{first_class}\" data-mark=\"{first_class}\">{first_mark} {cf}</td><td class=\"{first_class}\">{cfp}</td></tr>",
                nc = if k.comparable { "" } else { " not-comparable" },
                sg = escape(&k.segment),
                mt = escape(&k.metric),
                v = number(k.value),
                p = number(k.previous),
                cp = number(k.change_previous),
                cpp = percent(k.change_previous_pct),
                f = number(k.first),
                cf = number(k.change_first),
                cfp = percent(k.change_first_pct),
            );
        }
        html.push_str("</table>\n");
    }
}

fn stability_section(html: &mut String, rows: &[Stability]) {
    if rows.is_empty() {
        return;
    }
    html.push_str("<h2>Stability (PSI)</h2>\n<table class=\"stability\"><tr><th>measure</th><th>kind</th><th>periods</th><th>basis</th><th>PSI</th><th>flag</th></tr>\n");
    for s in rows {
        let flag = if s.comparable {
            format!("<span class=\"flag {f}\">{f}</span>", f = escape(&s.flag))
        } else {
            "<span class=\"not-comparable\">not comparable</span>".to_string()
        };
        let _ = writeln!(
            html,
            "<tr data-measure=\"{m}\" data-flag=\"{fl}\"><td>{m}</td><td>{k}</td><td>{a} → {b}</td><td>{basis}</td><td>{psi}</td><td>{flag}</td></tr>",
            m = escape(&s.measure),
            fl = escape(&s.flag),
            k = escape(&s.kind),
            a = escape(&s.period_from),
            b = escape(&s.period_to),
            basis = escape(&s.basis),
            psi = s.psi.map_or_else(|| "–".to_string(), |p| format!("{p:.3}")),
        );
    }
    html.push_str("</table>\n");
}

fn shift_section(html: &mut String, rows: &[Shift]) {
    if rows.is_empty() {
        return;
    }
    html.push_str("<h2>Model parameter shifts</h2>\n<table class=\"shifts\"><tr><th>model</th><th>kind</th><th>periods</th><th>parameter</th><th>from</th><th>to</th><th>change</th><th>change %</th></tr>\n");
    for s in rows {
        let (class, sign) = mark(s.change);
        let _ = writeln!(
            html,
            "<tr class=\"shift{nc}\" data-model=\"{m}\" data-parameter=\"{p}\"><td>{m}</td><td>{k}</td><td>{a} → {b}</td><td>{p}</td><td>{vf}</td><td>{vt}</td><td class=\"{class}\" data-mark=\"{class}\">{sign} {c}</td><td class=\"{class}\">{cp}</td></tr>",
            nc = if s.comparable { "" } else { " not-comparable" },
            m = escape(&s.model),
            k = escape(&s.kind),
            a = escape(&s.period_from),
            b = escape(&s.period_to),
            p = escape(&s.parameter),
            vf = number(s.value_from),
            vt = number(s.value_to),
            c = number(s.change),
            cp = percent(s.change_pct),
        );
    }
    html.push_str("</table>\n");
}

/// Every pair of periods some table marked not comparable, once per (table, subject, pair,
/// reason).
fn not_comparable(r: &TrendReport) -> Vec<String> {
    let pair = |a: &str, b: &str| format!("{a} → {b}");
    let mut out: Vec<String> = Vec::new();
    let mut push = |line: String| {
        if !out.contains(&line) {
            out.push(line);
        }
    };
    let why = |reason: &Option<String>| reason.clone().unwrap_or_else(|| "no reason given".into());
    for m in r.migrations.iter().filter(|m| !m.comparable) {
        push(format!(
            "migration of {}, {}: {}",
            m.segmentation,
            pair(&m.period_from, &m.period_to),
            why(&m.reason)
        ));
    }
    for s in r.stability.iter().filter(|s| !s.comparable) {
        push(format!(
            "stability of {}, {}: {}",
            s.measure,
            pair(&s.period_from, &s.period_to),
            why(&s.reason)
        ));
    }
    for k in r.kpis.iter().filter(|k| !k.comparable) {
        push(format!(
            "KPIs of {}, {}: {}",
            k.segmentation,
            k.period,
            why(&k.reason)
        ));
    }
    for s in r.shifts.iter().filter(|s| !s.comparable) {
        push(format!(
            "parameters of {}, {}: {}",
            s.model,
            pair(&s.period_from, &s.period_to),
            why(&s.reason)
        ));
    }
    out
}

pub fn render_trends(r: &TrendReport) -> String {
    let mut html = page_start(&r.title);
    let _ = writeln!(
        html,
        "<p class=\"summary\">Pipeline <b>{}</b>, period <b>{}</b>.</p>",
        escape(&r.pipeline),
        escape(&r.period)
    );
    let notes = not_comparable(r);
    if notes.is_empty() {
        html.push_str("<p class=\"note\" id=\"comparability\">Every pair of periods shown was comparable.</p>\n");
    } else {
        html.push_str("<div id=\"comparability\" class=\"not-comparable\"><p>Not compared (the segment definition or data changed between the periods, or a period is missing):</p><ul>\n");
        for line in &notes {
            let _ = writeln!(html, "<li>{}</li>", escape(line));
        }
        html.push_str("</ul></div>\n");
    }
    sizes_section(&mut html, &r.kpis);
    migration_section(&mut html, &r.migrations);
    kpi_section(&mut html, &r.kpis, &r.period);
    stability_section(&mut html, &r.stability);
    shift_section(&mut html, &r.shifts);
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(from: &str, to: &str, customers: i64, share: f64) -> MigrationCell {
        MigrationCell {
            from: from.into(),
            to: to.into(),
            customers,
            share,
        }
    }

    fn kpi(segment: &str, period: &str, value: f64, change: Option<f64>) -> Kpi {
        Kpi {
            segmentation: "tier".into(),
            segment: segment.into(),
            period: period.into(),
            metric: "customers".into(),
            value: Some(value),
            previous: change.map(|c| value - c),
            change_previous: change,
            change_previous_pct: change.map(|c| c / (value - c)),
            first: None,
            change_first: None,
            change_first_pct: None,
            comparable: true,
            reason: None,
        }
    }

    /// Two tiers over two years: A 3 → 4 (2 stayed, 1 from B, 1 new), B 5 → 2.
    fn report() -> TrendReport {
        TrendReport {
            title: "Tiers <2024–2025>".into(),
            pipeline: "trends".into(),
            period: "2025".into(),
            migrations: vec![Migration {
                segmentation: "tier".into(),
                basis: "previous".into(),
                period_from: "2024".into(),
                period_to: "2025".into(),
                cells: vec![
                    cell("A", "A", 2, 2.0 / 3.0),
                    cell("A", "(lost)", 1, 1.0 / 3.0),
                    cell("B", "B", 2, 0.4),
                    cell("B", "A", 1, 0.2),
                    cell("B", "(lost)", 2, 0.4),
                    cell("(new)", "A", 1, 1.0),
                ],
                comparable: true,
                reason: None,
            }],
            stability: vec![Stability {
                basis: "previous".into(),
                period_from: "2024".into(),
                period_to: "2025".into(),
                measure: "tier".into(),
                kind: "segments".into(),
                psi: Some(0.31),
                flag: "shifted".into(),
                comparable: true,
                reason: None,
            }],
            kpis: vec![
                kpi("A", "2024", 3.0, None),
                kpi("B", "2024", 5.0, None),
                kpi("A", "2025", 4.0, Some(1.0)),
                kpi("B", "2025", 2.0, Some(-3.0)),
            ],
            shifts: vec![Shift {
                model: "tier".into(),
                kind: "pareto".into(),
                period_from: "2023".into(),
                period_to: "2024".into(),
                parameter: "A".into(),
                value_from: Some(100.0),
                value_to: Some(90.0),
                change: Some(-10.0),
                change_pct: Some(-0.1),
                comparable: false,
                reason: Some("tier bounds changed".into()),
            }],
        }
    }

    #[test]
    fn the_heat_map_has_every_segment_on_both_axes_with_new_last_and_lost_last() {
        let html = render_trends(&report());
        let map_start = html
            .find("data-chart=\"migration-tier-previous-2024-2025\"")
            .expect("map");
        let map = &html[map_start..];
        let map = &map[..map.find("</svg>").expect("end")];
        let rows: Vec<&str> = map
            .split("<text class=\"row\"")
            .skip(1)
            .map(|t| &t[t.find('>').expect(">") + 1..t.find("</text>").expect("text")])
            .collect();
        assert_eq!(rows, ["A", "B", "(new)"]);
        let columns: Vec<&str> = map
            .split("<text class=\"column\"")
            .skip(1)
            .map(|t| &t[t.find('>').expect(">") + 1..t.find("</text>").expect("text")])
            .collect();
        assert_eq!(columns, ["A", "B", "(lost)"]);
        // 3 rows × 3 columns, empty cells included (B → A is there, A → B is 0).
        assert_eq!(map.matches("<g class=\"cell\"").count(), 9);
        assert!(
            map.contains(r#"data-from="B" data-to="A" data-customers="1" data-share="0.2000""#)
        );
        assert!(map.contains(r#"data-from="A" data-to="B" data-customers="0""#));
        assert!(map.contains("2 · 66.7%"));
    }

    #[test]
    fn sizes_stack_per_period_and_kpis_are_marked_up_or_down() {
        let html = render_trends(&report());
        assert!(html.contains("<title>Tiers &lt;2024–2025&gt;</title>"));
        assert!(html.contains(r#"data-chart="sizes-tier""#));
        assert!(html.contains(r#"data-period="2025" data-segment="B" data-customers="2""#));
        // Totals over the columns: 8 in 2024, 6 in 2025.
        assert!(html.contains(">8</text>") && html.contains(">6</text>"));
        // Only 2025's KPIs in the table, with their marks.
        assert_eq!(html.matches("<tr class=\"kpi\"").count(), 2);
        assert!(html.contains(r#"data-mark="up">▲ 1</td><td class="up">+33.3%</td>"#));
        assert!(html.contains(r#"data-mark="down">▼ -3</td><td class="down">-60.0%</td>"#));
        assert!(html.contains(r#"<span class="flag shifted">shifted</span>"#));
        assert!(html.contains("<td>0.310</td>"));
        assert!(html.contains(r#"data-mark="down">▼ -10</td><td class="down">-10.0%</td>"#));
    }

    #[test]
    fn pairs_that_were_not_comparable_are_listed_with_their_reasons() {
        let mut r = report();
        let html = render_trends(&r);
        assert!(html.contains("<li>parameters of tier, 2023 → 2024: tier bounds changed</li>"));
        r.migrations[0].comparable = false;
        r.migrations[0].reason = Some("tier bounds changed: A 0.8 → 0.7".into());
        let html = render_trends(&r);
        assert!(
            html.contains(
                "<li>migration of tier, 2024 → 2025: tier bounds changed: A 0.8 → 0.7</li>"
            )
        );
        assert!(html.contains(
            "<p class=\"not-comparable\">Not comparable: tier bounds changed: A 0.8 → 0.7.</p>"
        ));
        assert!(html.contains("class=\"chart heat-map not-comparable\""));
        r.shifts[0].comparable = true;
        r.migrations[0].comparable = true;
        assert!(render_trends(&r).contains("Every pair of periods shown was comparable."));
        assert!(
            !render_trends(&r)
                .replace("http://www.w3.org/2000/svg", "")
                .contains("http")
        );
    }
}
