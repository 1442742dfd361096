//! Minimising a smooth negative log-likelihood over log-parameters.
//!
//! BFGS with the analytic gradient goes first: from the data-scaled starts it reaches the
//! optimum of these 3–4 parameter likelihoods in a few dozen evaluations, where a
//! derivative-free search needs hundreds, and every evaluation is a pass over up to a million
//! rows. Its steps are capped in length and backtracked until the cost is finite and falls
//! enough (Armijo), so a start far from the optimum, where the log-gamma terms make the
//! surface badly scaled, costs iterations rather than an overflow.
//!
//! Whatever an optimizer returns must then pass one test, the same for all: the Newton step
//! H⁻¹g from that point is below [`STEP_TOLERANCE`] in every log-parameter, i.e. each
//! parameter is within that relative distance of the optimum, and H is positive definite,
//! i.e. it is a minimum. g is the analytic gradient and H its central differences, accurate
//! to ~1e-9 where second differences of the cost manage ~1e-7. Tolerances on the gradient
//! alone do not say that: it depends on the curvature, which differs by orders of magnitude
//! between the parameters of these models.
//!
//! If BFGS's point fails the test, Nelder-Mead takes over from it, restarted from its best
//! point with a fresh simplex until a restart no longer improves the cost (its known weakness
//! is stalling on a collapsed simplex), and BFGS then polishes Nelder-Mead's point. The
//! failure modes are opposite: Nelder-Mead needs no gradient and crawls robustly along
//! ridges and towards boundary optima, BFGS needs a smooth surface and converges quickly in
//! the curved, narrow valleys where Nelder-Mead crawls.
//!
//! Costs are expected per customer (the weighted mean, not the sum) so that the tolerances
//! mean the same for 2,000 customers as for 10 million.

use argmin::core::{CostFunction, Error, Executor, State};
use argmin::solver::neldermead::NelderMead;

/// A cost that also writes its gradient when given somewhere to put it: the likelihoods
/// share their per-row logarithms and exponentials between the two.
pub(super) type Smooth<'a> = dyn Fn(&[f64], Option<&mut [f64]>) -> f64 + 'a;

/// Edge of the first simplex in log-parameter space: a factor e^0.5 ≈ 1.65 per parameter.
const INITIAL_STEP: f64 = 0.5;
/// Edge of restart simplices: smaller, since a restart starts near the optimum already.
const RESTART_STEP: f64 = 0.1;
/// A Nelder-Mead run stops when the standard deviation of the simplex costs drops below
/// this; per-customer costs are O(1–100), so this is a few hundred ulps.
const SIMPLEX_COST_SD: f64 = 1e-13;
/// Per run; converging runs take 100–300 iterations on these models, so the caps only bound
/// the time spent drifting towards a boundary optimum.
const NELDER_MEAD_MAX_ITERS: u64 = 2_000;
/// First run plus restarts.
const NELDER_MEAD_MAX_RUNS: u32 = 5;
/// How far (in log-parameters) the search may move from the start: a factor e^16 ≈ 9e6 either
/// way. The starts are on the data's scale, so an interior optimum lies well inside; beyond
/// it, log-gamma differences such as lgamma(px+q) − lgamma(px) lose every significant digit
/// and the optimizers would chase rounding noise towards ever larger values instead of
/// stopping at a (flagged) boundary solution.
const SEARCH_RADIUS: f64 = 16.0;
/// A restart that improves the per-customer cost by less than this (relative) has found
/// nothing more.
const RESTART_IMPROVEMENT: f64 = 1e-13;
/// Largest accepted Newton step in any log-parameter: parameters within 1e-5 relative of the
/// optimum, far inside both the sampling error (percents) and the 3 significant digits of
/// published estimates.
const STEP_TOLERANCE: f64 = 1e-5;
/// BFGS stops once its own quasi-Newton step is this small: far enough below
/// [`STEP_TOLERANCE`] that an approximate inverse Hessian still passes the exact test, and
/// near the optimum the extra digits take one or two superlinear iterations.
const BFGS_STEP_TOLERANCE: f64 = 1e-8;
/// Converging runs take 10–60 iterations; the cap bounds a drift towards a boundary optimum,
/// which the step cap makes at least [`MAX_STEP`]-slow.
const BFGS_MAX_ITERS: u64 = 500;
/// Longest BFGS step in any log-parameter (a factor e per iteration): the first steps follow
/// the raw gradient, whose size says nothing about the distance to the optimum.
const MAX_STEP: f64 = 1.0;
/// Sufficient decrease (Armijo) as a fraction of the decrease the slope predicts.
const ARMIJO: f64 = 1e-4;
/// Backtracking halves the step at least every time: after this many the step is below
/// 1e-18 of the proposed one and the cost cannot tell the points apart.
const MAX_BACKTRACKS: u32 = 60;
/// Relative step of the central differences of the gradient that form the Hessian: the
/// gradient's rounding (~1e-14) divided by it and the truncation (its square) both stay
/// near 1e-9.
const HESSIAN_STEP: f64 = 1e-5;

/// The outcome of [`minimize`].
#[derive(Debug, Clone)]
pub(super) struct Minimum {
    pub theta: Vec<f64>,
    pub cost: f64,
    /// Over every run, the fallback and its restarts included.
    pub iterations: u64,
    pub converged: bool,
    /// The optimizer whose point was kept: `bfgs` or `nelder-mead`.
    pub optimizer: &'static str,
    /// Largest |Newton step| at `theta`; +∞ where the Hessian is not positive definite.
    pub newton_step: f64,
}

impl Minimum {
    /// The fit report of a model found at this minimum, or `NotConverged` when no point had a
    /// finite likelihood.
    pub(super) fn report<M: std::fmt::Debug>(
        &self,
        name: &'static str,
        model: &M,
        log_likelihood: f64,
        unique_rows: usize,
        customers: f64,
        started: std::time::Instant,
    ) -> Result<super::FitReport, super::ClvError> {
        if !log_likelihood.is_finite() {
            return Err(super::ClvError::NotConverged {
                model: name,
                log_likelihood,
                iterations: self.iterations,
                newton_step: self.newton_step,
                parameters: format!("{model:?}"),
            });
        }
        Ok(super::FitReport {
            log_likelihood,
            iterations: self.iterations,
            converged: self.converged,
            optimizer: self.optimizer.to_owned(),
            unique_rows: unique_rows as u64,
            customers,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

struct Objective<'a> {
    function: &'a Smooth<'a>,
    start: &'a [f64],
}

impl Objective<'_> {
    /// NaN counts as outside, so that a diverged step is simply rejected.
    fn inside(&self, theta: &[f64]) -> bool {
        theta
            .iter()
            .zip(self.start)
            .all(|(t, s)| (t - s).abs() <= SEARCH_RADIUS)
    }

    /// Outside the search box, and wherever the cost is NaN (overflow far from the optimum),
    /// the cost is +∞ so that every optimizer simply backs away.
    fn eval(&self, theta: &[f64]) -> f64 {
        if !self.inside(theta) {
            return f64::INFINITY;
        }
        let c = (self.function)(theta, None);
        if c.is_nan() { f64::INFINITY } else { c }
    }

    /// Like [`Self::eval`], and +∞ also where the gradient is not finite: a point without a
    /// usable slope is as useless to BFGS as one without a cost.
    fn eval_with_gradient(&self, theta: &[f64], gradient: &mut [f64]) -> f64 {
        if !self.inside(theta) {
            return f64::INFINITY;
        }
        let c = (self.function)(theta, Some(gradient));
        if c.is_nan() || gradient.iter().any(|g| !g.is_finite()) {
            f64::INFINITY
        } else {
            c
        }
    }

    /// Central differences of the gradient, symmetrized, row-major; None where a probe has
    /// no finite cost (at the edge of the search box).
    fn hessian_at(&self, theta: &[f64]) -> Option<Vec<f64>> {
        let n = theta.len();
        let mut columns = vec![0.0; n * n];
        let mut probe = theta.to_vec();
        let (mut up, mut down) = (vec![0.0; n], vec![0.0; n]);
        for i in 0..n {
            let h = HESSIAN_STEP * theta[i].abs().max(1.0);
            probe[i] = theta[i] + h;
            let c_up = self.eval_with_gradient(&probe, &mut up);
            probe[i] = theta[i] - h;
            let c_down = self.eval_with_gradient(&probe, &mut down);
            probe[i] = theta[i];
            if !(c_up.is_finite() && c_down.is_finite()) {
                return None;
            }
            for j in 0..n {
                columns[i * n + j] = (up[j] - down[j]) / (2.0 * h);
            }
        }
        let mut hessian = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                hessian[i * n + j] = 0.5 * (columns[i * n + j] + columns[j * n + i]);
            }
        }
        Some(hessian)
    }

    /// Largest |component| of the Newton step H⁻¹g at `theta`, or +∞ if H is not positive
    /// definite (a saddle, a ridge, or a flat direction: no isolated minimum here).
    fn newton_step(&self, theta: &[f64]) -> f64 {
        let mut g = vec![0.0; theta.len()];
        if !self.eval_with_gradient(theta, &mut g).is_finite() {
            return f64::INFINITY;
        }
        self.hessian_at(theta)
            .and_then(|h| cholesky_solve(&h, &g))
            .map_or(f64::INFINITY, |step| max_abs(&step))
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, Error> {
        Ok(self.eval(theta))
    }
}

/// Solves H s = g for symmetric `h` (row-major, n×n); None unless H is positive definite
/// with every entry finite.
fn cholesky_solve(h: &[f64], g: &[f64]) -> Option<Vec<f64>> {
    let n = g.len();
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = h[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (g[i] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k * n + i] * x[k]).sum::<f64>()) / l[i * n + i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0_f64, |m, g| {
        if g.is_finite() {
            m.max(g.abs())
        } else {
            f64::INFINITY
        }
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn simplex(theta: &[f64], step: f64) -> Vec<Vec<f64>> {
    let mut vertices = vec![theta.to_vec()];
    for i in 0..theta.len() {
        let mut v = theta.to_vec();
        v[i] += step;
        vertices.push(v);
    }
    vertices
}

struct Run {
    theta: Vec<f64>,
    cost: f64,
    iterations: u64,
}

fn nelder_mead(objective: &Objective<'_>, theta: &[f64], step: f64) -> Option<Run> {
    let solver = NelderMead::new(simplex(theta, step))
        .with_sd_tolerance(SIMPLEX_COST_SD)
        .ok()?;
    let problem = Objective {
        function: objective.function,
        start: objective.start,
    };
    let result = Executor::new(problem, solver)
        .configure(|state| state.max_iters(NELDER_MEAD_MAX_ITERS))
        .run()
        .ok()?;
    let state = result.state();
    Some(Run {
        theta: state.get_best_param()?.clone(),
        cost: state.get_best_cost(),
        iterations: state.get_iter(),
    })
}

/// Nelder-Mead from `theta`, restarted from its best point until a restart stops helping.
fn nelder_mead_restarted(objective: &Objective<'_>, theta: &[f64], cost: f64) -> Run {
    let mut best = Run {
        theta: theta.to_vec(),
        cost,
        iterations: 0,
    };
    for run in 0..NELDER_MEAD_MAX_RUNS {
        let step = if run == 0 { INITIAL_STEP } else { RESTART_STEP };
        let Some(r) = nelder_mead(objective, &best.theta, step) else {
            break;
        };
        best.iterations += r.iterations;
        let improvement = best.cost - r.cost;
        if r.cost < best.cost {
            best.cost = r.cost;
            best.theta = r.theta;
        }
        if run > 0 && improvement <= RESTART_IMPROVEMENT * (1.0 + best.cost.abs()) {
            break;
        }
    }
    best
}

/// BFGS on the inverse Hessian (the problems have at most four parameters, so the dense
/// update costs nothing next to one evaluation) with a capped, backtracked step. Returns the
/// last accepted point, which is the best one: every accepted step lowers the cost.
fn bfgs(objective: &Objective<'_>, theta: &[f64]) -> Run {
    let n = theta.len();
    let mut x = theta.to_vec();
    let mut g = vec![0.0; n];
    let mut cost = objective.eval_with_gradient(&x, &mut g);
    let mut run = Run {
        theta: x.clone(),
        cost,
        iterations: 0,
    };
    if !cost.is_finite() {
        return run;
    }
    let identity = |scale: f64| {
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            m[i * n + i] = scale;
        }
        m
    };
    let mut inverse = identity(1.0);
    // Until the first curvature pair rescales it, the inverse Hessian is a guess.
    let mut scaled = false;
    let (mut x_new, mut g_new) = (vec![0.0; n], vec![0.0; n]);
    let (mut s, mut y, mut hy) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    while run.iterations < BFGS_MAX_ITERS {
        let mut d: Vec<f64> = (0..n)
            .map(|i| -dot(&inverse[i * n..(i + 1) * n], &g))
            .collect();
        let mut slope = dot(&g, &d);
        if slope.is_nan() || slope >= 0.0 {
            // Rounding has made the approximation indefinite: start it over.
            inverse = identity(1.0);
            scaled = false;
            d = g.iter().map(|v| -v).collect();
            slope = dot(&g, &d);
            if slope.is_nan() || slope >= 0.0 {
                break;
            }
        }
        if scaled && max_abs(&d) <= BFGS_STEP_TOLERANCE {
            break;
        }
        let longest = max_abs(&d);
        if longest > MAX_STEP {
            let shrink = MAX_STEP / longest;
            d.iter_mut().for_each(|v| *v *= shrink);
            slope *= shrink;
        }
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..MAX_BACKTRACKS {
            for i in 0..n {
                x_new[i] = x[i] + t * d[i];
            }
            let c = objective.eval_with_gradient(&x_new, &mut g_new);
            if c <= cost + ARMIJO * t * slope {
                accepted = Some(c);
                break;
            }
            // The minimiser of the quadratic through the cost, the slope and the new cost,
            // kept within [t/10, t/2]; a plain halving where the new cost is not finite.
            t = if c.is_finite() {
                let quadratic = -slope * t * t / (2.0 * (c - cost - slope * t));
                quadratic.clamp(0.1 * t, 0.5 * t)
            } else {
                0.5 * t
            };
        }
        let Some(c) = accepted else {
            break;
        };
        run.iterations += 1;
        for i in 0..n {
            s[i] = x_new[i] - x[i];
            y[i] = g_new[i] - g[i];
        }
        let improved = c < cost;
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        cost = c;
        if !improved && max_abs(&s) <= BFGS_STEP_TOLERANCE {
            break;
        }
        let sy = dot(&s, &y);
        if sy > 0.0 && sy.is_finite() {
            if !scaled {
                inverse = identity(sy / dot(&y, &y));
                scaled = true;
            }
            // H ← (I − ρsyᵀ) H (I − ρysᵀ) + ρssᵀ, expanded: H − ρ(s(Hy)ᵀ + (Hy)sᵀ)
            // + (ρ²·yᵀHy + ρ)ssᵀ with ρ = 1/sᵀy.
            let rho = 1.0 / sy;
            for i in 0..n {
                hy[i] = dot(&inverse[i * n..(i + 1) * n], &y);
            }
            let yhy = dot(&y, &hy);
            let ss = rho * rho * yhy + rho;
            for i in 0..n {
                for j in 0..n {
                    inverse[i * n + j] += ss * s[i] * s[j] - rho * (s[i] * hy[j] + hy[i] * s[j]);
                }
            }
        }
    }
    run.theta = x;
    run.cost = cost;
    run
}

/// Minimises `function` from `start`; see the module docs for the strategy. Deterministic: no
/// randomness anywhere, so equal inputs give bit-identical results.
pub(super) fn minimize(function: &Smooth<'_>, start: &[f64]) -> Minimum {
    let objective = Objective { function, start };
    let first = bfgs(&objective, start);
    let newton_step = objective.newton_step(&first.theta);
    let mut minimum = Minimum {
        converged: first.cost.is_finite() && newton_step <= STEP_TOLERANCE,
        theta: first.theta,
        cost: first.cost,
        iterations: first.iterations,
        optimizer: "bfgs",
        newton_step,
    };
    if minimum.converged {
        return minimum;
    }
    let fallback = nelder_mead_restarted(&objective, &minimum.theta, minimum.cost);
    minimum.iterations += fallback.iterations;
    let mut changed = false;
    if fallback.cost < minimum.cost {
        minimum.theta = fallback.theta;
        minimum.cost = fallback.cost;
        minimum.optimizer = "nelder-mead";
        changed = true;
    }
    let polish = bfgs(&objective, &minimum.theta);
    minimum.iterations += polish.iterations;
    if polish.cost < minimum.cost {
        minimum.theta = polish.theta;
        minimum.cost = polish.cost;
        minimum.optimizer = "bfgs";
        changed = true;
    }
    if changed {
        minimum.newton_step = objective.newton_step(&minimum.theta);
        minimum.converged = minimum.cost.is_finite() && minimum.newton_step <= STEP_TOLERANCE;
    }
    minimum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rosenbrock, scaled down like a per-customer likelihood.
    fn rosenbrock(t: &[f64], gradient: Option<&mut [f64]>) -> f64 {
        if let Some(g) = gradient {
            g[0] = 1e-2 * (-2.0 * (1.0 - t[0]) - 400.0 * t[0] * (t[1] - t[0] * t[0]));
            g[1] = 1e-2 * 200.0 * (t[1] - t[0] * t[0]);
        }
        1e-2 * ((1.0 - t[0]).powi(2) + 100.0 * (t[1] - t[0] * t[0]).powi(2))
    }

    #[test]
    fn finds_the_minimum_of_a_badly_scaled_valley() {
        let m = minimize(&rosenbrock, &[-1.2, 1.0]);
        assert!(m.converged, "{m:?}");
        assert!(
            (m.theta[0] - 1.0).abs() < 1e-5 && (m.theta[1] - 1.0).abs() < 1e-5,
            "{m:?}"
        );
    }

    #[test]
    fn no_convergence_without_a_minimum() {
        let linear = |t: &[f64], g: Option<&mut [f64]>| {
            if let Some(g) = g {
                g.fill(-1.0);
            }
            -t[0] - t[1]
        };
        let m = minimize(&linear, &[0.0, 0.0]);
        assert!(!m.converged, "{m:?}");
        // Stopped at the edge of the search box, with a finite cost.
        assert!(
            m.cost.is_finite() && m.theta.iter().all(|t| t.abs() <= SEARCH_RADIUS),
            "{m:?}"
        );
        // A flat direction: the cost has a minimum value but no isolated minimiser.
        let flat = |t: &[f64], g: Option<&mut [f64]>| {
            if let Some(g) = g {
                g[0] = 2.0 * (t[0] - 1.0);
                g[1] = 0.0;
            }
            (t[0] - 1.0).powi(2)
        };
        let m = minimize(&flat, &[0.0, 0.0]);
        assert!(!m.converged, "{m:?}");
    }

    #[test]
    fn newton_step_on_a_quadratic_is_the_distance_to_the_minimum() {
        let quadratic = |t: &[f64], g: Option<&mut [f64]>| {
            if let Some(g) = g {
                g[0] = 6.0 * (t[0] - 1.0);
                g[1] = 0.02 * (t[1] + 2.0);
            }
            3.0 * (t[0] - 1.0).powi(2) + 0.01 * (t[1] + 2.0).powi(2)
        };
        let objective = Objective {
            function: &quadratic,
            start: &[0.0, 0.0],
        };
        let step = objective.newton_step(&[1.0 + 1e-3, -2.0 + 0.5]);
        assert!((step - 0.5).abs() < 1e-6, "{step}");
    }

    #[test]
    fn cholesky_rejects_indefinite() {
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]).is_none());
        let x = cholesky_solve(&[4.0, 2.0, 2.0, 3.0], &[2.0, 1.0]).unwrap_or_default();
        assert!((x[0] - 0.5).abs() < 1e-15 && x[1].abs() < 1e-15, "{x:?}");
    }

    #[test]
    fn deterministic() {
        let f = |t: &[f64], g: Option<&mut [f64]>| {
            let u = t[0] * t[1] - 1.0;
            if let Some(g) = g {
                g[0] = 2.0 * (t[0] - 3.0) + 2.0 * u * t[1];
                g[1] = 2.0 * u * t[0];
                g[2] = 0.2 * t[2];
            }
            (t[0] - 3.0).powi(2) + u.powi(2) + 0.1 * t[2].powi(2)
        };
        let a = minimize(&f, &[0.5, 0.5, 0.5]);
        let b = minimize(&f, &[0.5, 0.5, 0.5]);
        assert!(a.converged);
        assert_eq!(a.theta, b.theta);
        assert_eq!(a.iterations, b.iterations);
    }

    #[test]
    fn nelder_mead_takes_over_where_bfgs_cannot_start() {
        // A gradient that is NaN at the start (a kink BFGS cannot use) leaves BFGS where it
        // began; Nelder-Mead still finds the minimum and BFGS polishes it from there.
        let f = |t: &[f64], g: Option<&mut [f64]>| {
            let at_start = t.iter().all(|v| *v == 0.0);
            if let Some(g) = g {
                g[0] = if at_start {
                    f64::NAN
                } else {
                    2.0 * (t[0] - 1.0)
                };
                g[1] = 2.0 * (t[1] + 1.0);
            }
            (t[0] - 1.0).powi(2) + (t[1] + 1.0).powi(2)
        };
        let m = minimize(&f, &[0.0, 0.0]);
        assert!(m.converged, "{m:?}");
        assert!((m.theta[0] - 1.0).abs() < 1e-6 && (m.theta[1] + 1.0).abs() < 1e-6);
    }
}
