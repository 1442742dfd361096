//! Gauss hypergeometric function ₂F₁ by its power series, for BG/NBD's conditional
//! expectation.
//!
//! The series is enough there: the argument is z = t / (α + T + t), always in [0, 1), and
//! [`super::bgnbd`] picks, between the textbook ₂F₁ and its Euler transform, the one whose
//! parameters keep the series small (the textbook one for x in the hundreds grows past 1e300
//! before it converges).

/// Stop once the bound on the remaining terms falls below this fraction of the running sum
/// (without the leading 1, whose precision is what [`hyp2f1_minus_one`] is for).
const RELATIVE_TOLERANCE: f64 = f64::EPSILON;

/// Enough for z up to about 0.9999 (a horizon ten thousand times α + T); past that the
/// answer is NaN rather than a silently truncated sum.
const MAX_TERMS: u32 = 1_000_000;

/// ₂F₁(a, b; c; z) − 1, i.e. the series without its leading 1.
///
/// Returned separately because BG/NBD needs 1 − (1−z)^δ·₂F₁(…, δ; …) with δ = a − 1 near 0,
/// where ₂F₁ − 1 = O(δ): summing the tail directly keeps its relative precision instead of
/// losing it to the cancellation against 1.
///
/// NaN when |z| ≥ 1, when c is a pole (0, −1, −2, …) or when the series has not converged
/// after [`MAX_TERMS`] terms.
pub(crate) fn hyp2f1_minus_one(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let finite = a.is_finite() && b.is_finite() && c.is_finite() && z.is_finite();
    if !finite || z.abs() >= 1.0 || (c <= 0.0 && c.fract() == 0.0) {
        return f64::NAN;
    }
    if z == 0.0 {
        return 0.0;
    }
    // Past this index every Pochhammer factor is positive, so the term ratio is a smooth
    // rational function of k tending to z and the tail bound below holds.
    let settled_after = (-a).max(-b).max(-c).max(0.0);
    let mut term = 1.0_f64;
    let mut tail = 0.0_f64;
    for k in 0..MAX_TERMS {
        let k = f64::from(k);
        let ratio = (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        term *= ratio;
        if term == 0.0 {
            // a or b is a non-positive integer: the series is a polynomial and has ended.
            return tail;
        }
        tail += term;
        if !tail.is_finite() {
            return f64::NAN;
        }
        if k >= settled_after {
            // The remaining terms shrink at least geometrically with the larger of the
            // current ratio and its limit z.
            let rho = ratio.abs().max(z.abs());
            if rho < 1.0 && term.abs() * rho / (1.0 - rho) <= RELATIVE_TOLERANCE * tail.abs() {
                return tail;
            }
        }
    }
    f64::NAN
}

/// ₂F₁(a, b; c; z) for |z| < 1 by its power series; see [`hyp2f1_minus_one`].
#[cfg(test)]
pub(crate) fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    1.0 + hyp2f1_minus_one(a, b, c, z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs().max(1e-300),
            "got {got:e}, want {want:e}"
        );
    }

    #[test]
    fn log_identity() {
        // ₂F₁(1, 1; 2; z) = −ln(1 − z) / z.
        for z in [1e-6, 0.1, 0.5, 0.9, 0.99, -0.5] {
            close(hyp2f1(1.0, 1.0, 2.0, z), -(-z).ln_1p() / z, 1e-13);
        }
    }

    #[test]
    fn binomial_identity() {
        // ₂F₁(a, b; b; z) = (1 − z)^(−a).
        for (a, b, z) in [(0.3, 2.5, 0.4), (5.0, 1.5, 0.8), (-0.7, 3.0, 0.95)] {
            close(hyp2f1(a, b, b, z), (1.0 - z).powf(-a), 1e-13);
        }
    }

    #[test]
    fn arcsin_identity() {
        // ₂F₁(½, ½; 3/2; z²) = arcsin(z) / z.
        for z in [0.2_f64, 0.7, 0.99] {
            close(hyp2f1(0.5, 0.5, 1.5, z * z), z.asin() / z, 1e-13);
        }
    }

    #[test]
    fn polynomial_when_a_is_a_negative_integer() {
        // ₂F₁(−2, b; c; z) = 1 − 2bz/c + b(b+1)z²/(c(c+1)).
        let (b, c, z) = (1.7, 3.2, 0.6);
        let want = 1.0 - 2.0 * b * z / c + b * (b + 1.0) * z * z / (c * (c + 1.0));
        close(hyp2f1(-2.0, b, c, z), want, 1e-14);
    }

    #[test]
    fn tail_keeps_precision_when_a_parameter_is_tiny() {
        // With b = δ every term carries the factor δ, so ₂F₁ − 1 ≈ δ·(−ln(1 − z)) for
        // ₂F₁(1, δ; 1; z) = (1 − z)^(−δ): exactly expm1(−δ·ln(1 − z)).
        let (delta, z) = (1e-12, 0.7_f64);
        close(
            hyp2f1_minus_one(1.0, delta, 1.0, z),
            (-delta * (-z).ln_1p()).exp_m1(),
            1e-12,
        );
    }

    #[test]
    fn large_c_from_many_purchases() {
        // Value from scipy.special.hyp2f1(2.4687, -0.2071, 403.2187, 0.5) (scipy 1.17).
        close(
            hyp2f1(2.4687, -0.2071, 403.2187, 0.5),
            0.999_364_934_804_865_2,
            1e-13,
        );
    }

    #[test]
    fn nan_outside_the_unit_disc_and_at_poles() {
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_nan());
        assert!(hyp2f1(1.0, 1.0, -2.0, 0.5).is_nan());
        assert!(hyp2f1(f64::NAN, 1.0, 2.0, 0.5).is_nan());
        assert_eq!(hyp2f1(1.0, 1.0, 2.0, 0.0), 1.0);
    }
}
