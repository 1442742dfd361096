//! Minimising a smooth negative log-likelihood over log-parameters.
//!
//! Nelder-Mead goes first because it needs no gradient (the likelihoods have none in closed
//! form without digamma, which `libm` lacks) and is robust far from the optimum, where the
//! log-gamma terms make the surface badly scaled. Its known weakness is stalling on a
//! collapsed simplex short of the optimum, so it is restarted from its best point with a fresh
//! simplex until a restart no longer improves the cost.
//!
//! Whatever an optimizer returns must then pass one test, the same for both: the Newton step
//! H⁻¹g from that point (numerical gradient and Hessian) is below [`STEP_TOLERANCE`] in every
//! log-parameter, i.e. each parameter is within that relative distance of the optimum, and H
//! is positive definite, i.e. it is a minimum. Tolerances on the gradient alone or on the
//! simplex's cost spread do not say that: both depend on the curvature, which differs by
//! orders of magnitude between the parameters of these models.
//!
//! If Nelder-Mead's point fails the test, L-BFGS with the numerical gradient takes over from
//! it. Its failure modes are the opposite ones (it needs a good start and a smooth surface,
//! which it has by then) and it converges quickly in the curved, narrow valleys where
//! Nelder-Mead crawls.
//!
//! Costs are expected per customer (the weighted mean, not the sum) so that the cost
//! tolerances mean the same for 2,000 customers as for 10 million.

use argmin::core::{CostFunction, Error, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::neldermead::NelderMead;
use argmin::solver::quasinewton::LBFGS;

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
/// published estimates, and ~100 times above the noise of the numerical derivatives.
/// Nelder-Mead typically ends 1e-6–5e-6 away, so this also keeps L-BFGS a fallback rather
/// than a routine polish.
const STEP_TOLERANCE: f64 = 1e-5;
const LBFGS_MAX_ITERS: u64 = 2_000;
const LBFGS_MEMORY: usize = 7;
/// Relative finite-difference steps: large enough that the ~1e-15 cost rounding stays small
/// against the differences, small enough that truncation stays below it too.
const GRADIENT_STEP: f64 = 1e-5;
const HESSIAN_STEP: f64 = 1e-4;

/// The outcome of [`minimize`].
#[derive(Debug, Clone)]
pub(super) struct Minimum {
    pub theta: Vec<f64>,
    pub cost: f64,
    /// Over every run, restarts and the fallback included.
    pub iterations: u64,
    pub converged: bool,
    /// The optimizer whose point was kept: `nelder-mead` or `l-bfgs`.
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
    cost: &'a dyn Fn(&[f64]) -> f64,
    start: &'a [f64],
}

impl Objective<'_> {
    /// Outside the search box, and wherever the cost is NaN (overflow far from the optimum),
    /// the cost is +∞ so that both optimizers simply back away.
    fn eval(&self, theta: &[f64]) -> f64 {
        let outside = theta
            .iter()
            .zip(self.start)
            .any(|(t, s)| (t - s).abs() > SEARCH_RADIUS);
        if outside {
            return f64::INFINITY;
        }
        let c = (self.cost)(theta);
        if c.is_nan() { f64::INFINITY } else { c }
    }

    fn gradient_at(&self, theta: &[f64]) -> Vec<f64> {
        let mut probe = theta.to_vec();
        (0..theta.len())
            .map(|i| {
                let h = GRADIENT_STEP * theta[i].abs().max(1.0);
                probe[i] = theta[i] + h;
                let up = self.eval(&probe);
                probe[i] = theta[i] - h;
                let down = self.eval(&probe);
                probe[i] = theta[i];
                (up - down) / (2.0 * h)
            })
            .collect()
    }

    /// Central-difference Hessian, row-major.
    fn hessian_at(&self, theta: &[f64]) -> Vec<f64> {
        let n = theta.len();
        let h: Vec<f64> = theta
            .iter()
            .map(|t| HESSIAN_STEP * t.abs().max(1.0))
            .collect();
        let centre = self.eval(theta);
        let mut probe = theta.to_vec();
        let mut at = |moves: &[(usize, f64)]| {
            for &(i, s) in moves {
                probe[i] = theta[i] + s * h[i];
            }
            let c = self.eval(&probe);
            for &(i, _) in moves {
                probe[i] = theta[i];
            }
            c
        };
        let mut hessian = vec![0.0; n * n];
        for i in 0..n {
            hessian[i * n + i] =
                (at(&[(i, 1.0)]) - 2.0 * centre + at(&[(i, -1.0)])) / (h[i] * h[i]);
            for j in 0..i {
                let d = at(&[(i, 1.0), (j, 1.0)])
                    - at(&[(i, 1.0), (j, -1.0)])
                    - at(&[(i, -1.0), (j, 1.0)])
                    + at(&[(i, -1.0), (j, -1.0)]);
                hessian[i * n + j] = d / (4.0 * h[i] * h[j]);
                hessian[j * n + i] = hessian[i * n + j];
            }
        }
        hessian
    }

    /// Largest |component| of the Newton step H⁻¹g at `theta`, or +∞ if H is not positive
    /// definite (a saddle, a ridge, or a flat direction: no isolated minimum here).
    fn newton_step(&self, theta: &[f64]) -> f64 {
        let g = self.gradient_at(theta);
        let h = self.hessian_at(theta);
        match cholesky_solve(&h, &g) {
            Some(step) => max_abs(&step),
            None => f64::INFINITY,
        }
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, Error> {
        Ok(self.eval(theta))
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Self::Param) -> Result<Vec<f64>, Error> {
        Ok(self.gradient_at(theta))
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
        cost: objective.cost,
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

fn lbfgs(objective: &Objective<'_>, theta: &[f64]) -> Option<Run> {
    // Argmin's own stopping rules only end the run; the Newton-step test judges it.
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), LBFGS_MEMORY)
        .with_tolerance_grad(1e-10)
        .ok()?
        .with_tolerance_cost(0.0)
        .ok()?;
    let problem = Objective {
        cost: objective.cost,
        start: objective.start,
    };
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(theta.to_vec()).max_iters(LBFGS_MAX_ITERS))
        .run()
        .ok()?;
    let state = result.state();
    Some(Run {
        theta: state.get_best_param()?.clone(),
        cost: state.get_best_cost(),
        iterations: state.get_iter(),
    })
}

/// Minimises `cost` from `start`; see the module docs for the strategy. Deterministic: no
/// randomness anywhere, so equal inputs give bit-identical results.
pub(super) fn minimize(cost: &dyn Fn(&[f64]) -> f64, start: &[f64]) -> Minimum {
    let objective = Objective { cost, start };
    let mut theta = start.to_vec();
    let mut best = objective.eval(&theta);
    let mut iterations = 0;
    for run in 0..NELDER_MEAD_MAX_RUNS {
        let step = if run == 0 { INITIAL_STEP } else { RESTART_STEP };
        let Some(r) = nelder_mead(&objective, &theta, step) else {
            break;
        };
        iterations += r.iterations;
        let improvement = best - r.cost;
        if r.cost < best {
            best = r.cost;
            theta = r.theta;
        }
        if run > 0 && improvement <= RESTART_IMPROVEMENT * (1.0 + best.abs()) {
            break;
        }
    }
    let newton_step = objective.newton_step(&theta);
    let mut minimum = Minimum {
        converged: best.is_finite() && newton_step <= STEP_TOLERANCE,
        theta,
        cost: best,
        iterations,
        optimizer: "nelder-mead",
        newton_step,
    };
    if minimum.converged {
        return minimum;
    }
    if let Some(r) = lbfgs(&objective, &minimum.theta) {
        minimum.iterations += r.iterations;
        if r.cost <= minimum.cost && r.cost.is_finite() {
            let newton_step = objective.newton_step(&r.theta);
            minimum = Minimum {
                converged: newton_step <= STEP_TOLERANCE,
                theta: r.theta,
                cost: r.cost,
                optimizer: "l-bfgs",
                newton_step,
                iterations: minimum.iterations,
            };
        }
    }
    minimum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_badly_scaled_valley() {
        // Rosenbrock, scaled down like a per-customer likelihood.
        let rosenbrock =
            |t: &[f64]| 1e-2 * ((1.0 - t[0]).powi(2) + 100.0 * (t[1] - t[0] * t[0]).powi(2));
        let m = minimize(&rosenbrock, &[-1.2, 1.0]);
        assert!(m.converged, "{m:?}");
        assert!(
            (m.theta[0] - 1.0).abs() < 1e-5 && (m.theta[1] - 1.0).abs() < 1e-5,
            "{m:?}"
        );
    }

    #[test]
    fn no_convergence_without_a_minimum() {
        let m = minimize(&|t: &[f64]| -t[0] - t[1], &[0.0, 0.0]);
        assert!(!m.converged, "{m:?}");
        // Stopped at the edge of the search box, with a finite cost.
        assert!(
            m.cost.is_finite() && m.theta.iter().all(|t| t.abs() <= SEARCH_RADIUS),
            "{m:?}"
        );
        // A flat direction: the cost has a minimum value but no isolated minimiser.
        let m = minimize(&|t: &[f64]| (t[0] - 1.0).powi(2), &[0.0, 0.0]);
        assert!(!m.converged, "{m:?}");
    }

    #[test]
    fn newton_step_on_a_quadratic_is_the_distance_to_the_minimum() {
        let objective = Objective {
            cost: &|t: &[f64]| 3.0 * (t[0] - 1.0).powi(2) + 0.01 * (t[1] + 2.0).powi(2),
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
        let f = |t: &[f64]| (t[0] - 3.0).powi(2) + (t[0] * t[1] - 1.0).powi(2) + 0.1 * t[2].powi(2);
        let a = minimize(&f, &[0.5, 0.5, 0.5]);
        let b = minimize(&f, &[0.5, 0.5, 0.5]);
        assert!(a.converged);
        assert_eq!(a.theta, b.theta);
        assert_eq!(a.iterations, b.iterations);
    }
}
