//! A model artifact's parameters, split into what *defines* the segments (bins, rules, tier
//! shares, the number of clusters, the features) and what a yearly refit *estimates* (cut
//! points, tier thresholds, centroids, likelihood parameters). Two periods whose definitions
//! differ are not compared; a refit under the same definition is, and its estimates' shift is
//! reported. The split knows the artifact shapes of segflow's models; for any other kind every
//! number counts as estimated and the rest as definition.

use serde_json::Value;

/// One artifact, split.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelView {
    /// The artifact's parameters without the estimated parts.
    pub definition: Value,
    /// Estimated numbers by a readable name (`cut_points.monetary[2]`, `centroid 1.frequency`),
    /// in a fixed order.
    pub estimates: Vec<(String, f64)>,
}

impl ModelView {
    /// Splits the parameters of a `kind` artifact (`rfm`, `pareto`, `kmeans`, …).
    pub fn of(kind: &str, parameters: &Value) -> Self {
        let mut definition = parameters.clone();
        let mut estimates = Vec::new();
        match kind {
            "rfm" => {
                if definition["method"].as_str() != Some("cuts")
                    && let Some(cuts) = take(&mut definition, "cut_points")
                {
                    leaves(&cuts, "cut_points", &mut estimates);
                }
            }
            "pareto" => {
                if let Some(tiers) = definition["tiers"].as_array_mut() {
                    for tier in tiers {
                        let name = tier["tier"].as_str().unwrap_or("?").to_string();
                        if let Some(v) = take(tier, "min_value").and_then(|v| v.as_f64()) {
                            estimates.push((format!("tier {name}.min_value"), v));
                        }
                    }
                }
            }
            "matrix" => {
                for axis in ["x", "y"] {
                    let a = &mut definition[axis];
                    if a["split"].as_str() == Some("value") {
                        continue;
                    }
                    let name = a["name"].as_str().unwrap_or(axis).to_string();
                    if let Some(v) = take(a, "threshold").and_then(|v| v.as_f64()) {
                        estimates.push((format!("{name}.threshold"), v));
                    }
                }
            }
            "kmeans" | "kprototypes" => cluster(&mut definition, &mut estimates),
            "clv" => {
                for part in ["bgnbd", "gamma_gamma"] {
                    if let Some(p) = take(&mut definition, part) {
                        leaves(&p, part, &mut estimates);
                    }
                }
                for report in ["bgnbd_fit", "gamma_gamma_fit"] {
                    take(&mut definition, report);
                }
            }
            "rules" => {}
            _ => {
                leaves(&definition, "", &mut estimates);
                strip_numbers(&mut definition);
            }
        }
        ModelView {
            definition,
            estimates,
        }
    }
}

/// Clusters: k, seed and features define; centroids, scaling and sizes are estimated. A
/// centroid is named by its id, which segflow keeps stable across refits.
fn cluster(definition: &mut Value, estimates: &mut Vec<(String, f64)>) {
    take(definition, "aligned_to");
    let features: Vec<String> = definition["numeric"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f.as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default();
    let feature = |j: usize| features.get(j).cloned().unwrap_or_else(|| format!("#{j}"));
    let model = &mut definition["model"];
    let centroids = take(model, "centroids").unwrap_or(Value::Null);
    let sizes = take(model, "sizes").unwrap_or(Value::Null);
    let centroids = centroids.as_array().cloned().unwrap_or_default();
    // Ids in id order, so the rows come out the same whatever the fit order was.
    let mut order: Vec<usize> = (0..centroids.len()).collect();
    order.sort_by_key(|&i| centroids[i]["id"].as_u64().unwrap_or(u64::MAX));
    for i in order {
        let c = &centroids[i];
        let id = c["id"].as_u64().unwrap_or(i as u64);
        for (j, v) in c["numeric"].as_array().into_iter().flatten().enumerate() {
            if let Some(v) = v.as_f64() {
                estimates.push((format!("centroid {id}.{}", feature(j)), v));
            }
        }
        if let Some(size) = sizes.get(i).and_then(Value::as_f64) {
            estimates.push((format!("centroid {id}.size"), size));
        }
    }
    for (part, label) in [("means", "mean"), ("std_devs", "std_dev")] {
        if let Some(values) = take(model, part) {
            for (j, v) in values.as_array().into_iter().flatten().enumerate() {
                if let Some(v) = v.as_f64() {
                    estimates.push((format!("{label}.{}", feature(j)), v));
                }
            }
        }
    }
    for fit_detail in ["inertia", "iterations", "converged", "restart_inertias"] {
        take(model, fit_detail);
    }
}

/// Removes `key` from an object and returns its value.
fn take(value: &mut Value, key: &str) -> Option<Value> {
    value.as_object_mut()?.remove(key)
}

/// Every number under `value`, named by its path below `prefix`.
fn leaves(value: &Value, prefix: &str, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_f64() {
                out.push((prefix.to_string(), v));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                leaves(item, &format!("{prefix}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &path, out);
            }
        }
        _ => {}
    }
}

fn strip_numbers(value: &mut Value) {
    match value {
        Value::Number(_) => *value = Value::Null,
        Value::Array(items) => items.iter_mut().for_each(strip_numbers),
        Value::Object(map) => map.values_mut().for_each(strip_numbers),
        _ => {}
    }
}

/// Every leaf of a definition by path (`bins`, `segments[2].when`), as JSON text.
fn definition_leaves(value: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                definition_leaves(item, &format!("{prefix}[{i}]"), out);
            }
        }
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                definition_leaves(v, &path, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// What differs between two definitions, one `path: before → after` per leaf, in path order.
pub fn definition_changes(before: &Value, after: &Value) -> Vec<String> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    definition_leaves(before, "", &mut a);
    definition_leaves(after, "", &mut b);
    let a: std::collections::BTreeMap<_, _> = a.into_iter().collect();
    let b: std::collections::BTreeMap<_, _> = b.into_iter().collect();
    let absent = "(absent)".to_string();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).unwrap_or(&absent), b.get(k).unwrap_or(&absent));
            (x != y).then(|| format!("{k}: {x} → {y}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rfm(bins: u32, cuts: [f64; 2]) -> Value {
        json!({"bins": bins, "method": "ntile", "frequency": "orders", "monetary": "sum",
               "lookback": "3 years",
               "cut_points": {"recency_days": [cuts[0], cuts[1]], "frequency": [2.0, 4.0], "monetary": [10.0, 20.0]},
               "segments": [{"name": "Top", "when": "r >= 4"}, {"name": "Rest", "when": null}]})
    }

    #[test]
    fn an_rfm_refit_keeps_its_definition_and_shows_its_cut_points() {
        let a = ModelView::of("rfm", &rfm(5, [25.0, 81.0]));
        let b = ModelView::of("rfm", &rfm(5, [30.0, 81.0]));
        assert_eq!(a.definition, b.definition);
        assert!(definition_changes(&a.definition, &b.definition).is_empty());
        assert_eq!(a.estimates.len(), 6);
        assert!(
            a.estimates
                .contains(&("cut_points.recency_days[0]".into(), 25.0))
        );
        assert!(
            b.estimates
                .contains(&("cut_points.recency_days[0]".into(), 30.0))
        );
    }

    #[test]
    fn other_bins_are_another_definition() {
        let a = ModelView::of("rfm", &rfm(5, [25.0, 81.0]));
        let b = ModelView::of("rfm", &rfm(4, [25.0, 81.0]));
        assert_eq!(
            definition_changes(&a.definition, &b.definition),
            vec!["bins: 5 → 4".to_string()]
        );
    }

    #[test]
    fn given_cut_points_are_definition() {
        let mut p = rfm(5, [25.0, 81.0]);
        p["method"] = json!("cuts");
        let v = ModelView::of("rfm", &p);
        assert!(v.estimates.is_empty());
        assert!(v.definition.get("cut_points").is_some());
    }

    #[test]
    fn pareto_shares_define_and_thresholds_are_estimated() {
        let p = |min: f64, share: f64| {
            json!({"basis": "value", "rest": "C",
                   "tiers": [{"tier": "A", "share_below": share, "min_value": min}]})
        };
        let a = ModelView::of("pareto", &p(4129.05, 0.8));
        assert_eq!(a.estimates, vec![("tier A.min_value".to_string(), 4129.05)]);
        let b = ModelView::of("pareto", &p(5000.0, 0.8));
        assert_eq!(a.definition, b.definition);
        let c = ModelView::of("pareto", &p(4129.05, 0.7));
        assert_eq!(
            definition_changes(&a.definition, &c.definition),
            vec!["tiers[0].share_below: 0.8 → 0.7".to_string()]
        );
    }

    #[test]
    fn kmeans_centroids_are_named_by_id_and_feature() {
        let p = json!({"aligned_to": "2024", "categorical": [], "numeric": ["recency_days", "frequency"],
            "model": {"k": 2, "seed": 7, "categorical_weight": 0.5, "converged": true, "iterations": 3,
                      "inertia": 1.5, "restart_inertias": [1.5],
                      "centroids": [{"id": 1, "numeric": [10.0, 2.0], "numeric_z": [0.1, 0.2], "categorical": []},
                                    {"id": 0, "numeric": [100.0, 1.0], "numeric_z": [0.3, 0.4], "categorical": []}],
                      "sizes": [7, 3], "means": [50.0, 1.5], "std_devs": [40.0, 0.5]}});
        let v = ModelView::of("kmeans", &p);
        let names: Vec<&str> = v.estimates.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "centroid 0.recency_days",
                "centroid 0.frequency",
                "centroid 0.size",
                "centroid 1.recency_days",
                "centroid 1.frequency",
                "centroid 1.size",
                "mean.recency_days",
                "mean.frequency",
                "std_dev.recency_days",
                "std_dev.frequency"
            ]
        );
        assert_eq!(v.estimates[2].1, 3.0);
        assert_eq!(
            v.definition,
            json!({"categorical": [], "numeric": ["recency_days", "frequency"],
                   "model": {"k": 2, "seed": 7, "categorical_weight": 0.5}})
        );
    }

    #[test]
    fn matrix_given_split_is_definition() {
        let p = json!({"cells": ["a", "b", "c", "d"],
            "x": {"name": "value", "expr": "revenue", "split": "median", "threshold": 12.0},
            "y": {"name": "loyalty", "expr": "orders", "split": "value", "threshold": 2.0}});
        let v = ModelView::of("matrix", &p);
        assert_eq!(v.estimates, vec![("value.threshold".to_string(), 12.0)]);
        assert_eq!(v.definition["y"]["threshold"], json!(2.0));
    }

    #[test]
    fn unknown_kinds_estimate_every_number() {
        let v = ModelView::of(
            "potential",
            &json!({"target": "revenue", "coefficients": [1.5, 2.0]}),
        );
        assert_eq!(v.estimates.len(), 2);
        assert_eq!(
            v.definition,
            json!({"target": "revenue", "coefficients": [null, null]})
        );
    }
}
