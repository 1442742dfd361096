//! Period-over-period change of one number.

/// `to − from` and `(to − from) / |from|`; the relative change is absent when `from` is 0 or
/// either value is missing (a segment that did not exist has no growth rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub absolute: Option<f64>,
    pub relative: Option<f64>,
}

impl Change {
    pub fn between(from: Option<f64>, to: Option<f64>) -> Self {
        match (from, to) {
            (Some(a), Some(b)) => Change {
                absolute: Some(b - a),
                relative: (a != 0.0).then(|| (b - a) / a.abs()),
            },
            _ => Change {
                absolute: None,
                relative: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_and_decline() {
        let c = Change::between(Some(200.0), Some(250.0));
        assert_eq!(c.absolute, Some(50.0));
        assert_eq!(c.relative, Some(0.25));
        let c = Change::between(Some(-4.0), Some(-2.0));
        assert_eq!(c.relative, Some(0.5));
    }

    #[test]
    fn from_zero_or_missing_has_no_rate() {
        assert_eq!(Change::between(Some(0.0), Some(3.0)).relative, None);
        assert_eq!(Change::between(Some(0.0), Some(3.0)).absolute, Some(3.0));
        assert_eq!(Change::between(None, Some(3.0)).absolute, None);
    }
}
