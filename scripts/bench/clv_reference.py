"""The CLV half of benchmark job B's reference: BG/NBD + Gamma-Gamma, lifetimes-style, in Python.

Reads the per-customer purchase summary that duckdb_yearly.py --clv-summary wrote (one row per
customer: frequency, recency, T in weeks, monetary_value, as lifetimes' summaries have them)
and does what the shipped pipeline's `clv` step does with it:

  * BetaGeoFitter(penalizer_coef=0).fit(frequency, recency, T) on every customer's row;
  * GammaGammaFitter(penalizer_coef=0).fit(frequency, monetary_value) on the customers with
    frequency > 0 and monetary_value > 0;
  * predictions for every customer: P(alive), purchases expected in the next `--horizon` weeks,
    and `--clv-months` months of discounted CLV (customer_lifetime_value, freq="W",
    discount_rate=`--monthly-discount`) times `--margin`.

Timed: the two fits and the predictions (the summary's reading is not; the DuckDB run that
computed it is timed on its own). `--impl lifetimes` uses the `lifetimes` package (0.11.3);
`--impl scipy` fits the same likelihoods (lifetimes' formulas) with scipy.optimize.minimize
(Nelder-Mead on log parameters) and predicts with scipy.special.hyp2f1; `auto` (the default)
takes lifetimes when it imports, and scipy when lifetimes' fit does not converge (its
Gamma-Gamma fit fails on the 1M generated customers). Prints one JSON line: implementation, seconds, parameters.

    python clv_reference.py --summary FILE.parquet [--out FILE.parquet] [--impl auto|lifetimes|scipy]
"""
import argparse
import json
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WEEKS_PER_MONTH = 4.345  # lifetimes' factor for freq="W"


def with_lifetimes(f, r, t, m, args):
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    f, r, t, m = (pd.Series(v) for v in (f, r, t, m))
    started = time.perf_counter()
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(f, r, t)
    repeat = (f > 0) & (m > 0)
    ggf = GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(f[repeat], m[repeat])
    p_alive = bgf.conditional_probability_alive(f, r, t)
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(args.horizon, f, r, t)
    clv = ggf.customer_lifetime_value(bgf, f, r, t, m, time=args.clv_months,
                                      discount_rate=args.monthly_discount, freq="W") * args.margin
    seconds = time.perf_counter() - started
    return seconds, dict(bgf.params_), dict(ggf.params_), {
        "p_alive": np.asarray(p_alive, dtype=float), "expected_purchases": np.asarray(expected, dtype=float),
        "clv": np.asarray(clv, dtype=float)}


def with_scipy(f, r, t, m, args):
    from scipy.optimize import minimize
    from scipy.special import gammaln, hyp2f1

    def bgnbd_nll(log_params):
        rr, alpha, a, b = np.exp(log_params)
        a1 = gammaln(rr + f) - gammaln(rr) + rr * np.log(alpha)
        a2 = gammaln(a + b) + gammaln(b + f) - gammaln(b) - gammaln(a + b + f)
        a3 = -(rr + f) * np.log(alpha + t)
        a4 = np.where(f > 0, np.log(a) - np.log(b + np.maximum(f, 1) - 1) - (rr + f) * np.log(alpha + r), -np.inf)
        return -np.mean(a1 + a2 + np.logaddexp(a3, a4))

    def gg_nll(log_params, x, mx):
        p, q, v = np.exp(log_params)
        ll = (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v) + (p * x - 1) * np.log(mx)
              + (p * x) * np.log(x) - (p * x + q) * np.log(x * mx + v))
        return -np.mean(ll)

    def fit(nll, n, *extra):
        res = minimize(nll, np.zeros(n), args=extra, method="Nelder-Mead",
                       options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-10})
        return np.exp(res.x)

    started = time.perf_counter()
    rr, alpha, a, b = fit(bgnbd_nll, 4)
    repeat = (f > 0) & (m > 0)
    p, q, v = fit(gg_nll, 3, f[repeat], m[repeat])

    odds = np.where(f > 0, a / (b + np.maximum(f, 1) - 1) * ((alpha + t) / (alpha + r)) ** (rr + f), 0.0)
    p_alive = 1.0 / (1.0 + odds)

    def expected_up_to(horizon):
        if horizon == 0:
            return np.zeros_like(f)
        z = horizon / (alpha + t + horizon)
        hyp = hyp2f1(rr + f, b + f, a + b + f - 1, z)
        numerator = (a + b + f - 1) / (a - 1) * (1 - hyp * ((alpha + t) / (alpha + t + horizon)) ** (rr + f))
        return numerator / (1.0 + odds)

    expected = expected_up_to(args.horizon)
    weight = p * f / (p * f + q - 1)
    spend = (1 - weight) * (v * p / (q - 1)) + weight * m
    clv = np.zeros_like(f)
    previous = np.zeros_like(f)
    for month in range(1, args.clv_months + 1):
        cumulative = expected_up_to(month * WEEKS_PER_MONTH)
        clv += spend * (cumulative - previous) / (1 + args.monthly_discount) ** month
        previous = cumulative
    clv *= args.margin
    seconds = time.perf_counter() - started
    return seconds, {"r": rr, "alpha": alpha, "a": a, "b": b}, {"p": p, "q": q, "v": v}, {
        "p_alive": p_alive, "expected_purchases": expected, "clv": clv}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--summary", required=True)
    ap.add_argument("--out")
    ap.add_argument("--impl", default="auto", choices=["auto", "lifetimes", "scipy"])
    ap.add_argument("--horizon", type=float, default=52)
    ap.add_argument("--clv-months", type=int, default=12)
    ap.add_argument("--monthly-discount", type=float, default=0.01)
    ap.add_argument("--margin", type=float, default=0.3)
    args = ap.parse_args()
    impl = args.impl
    if impl == "auto":
        try:
            import lifetimes  # noqa: F401
            impl = "lifetimes"
        except Exception:  # not installed, or its dependencies are not
            impl = "scipy"
    table = pq.read_table(args.summary)
    f, r, t, m = (table.column(c).to_numpy().astype(float) for c in ("frequency", "recency", "T", "monetary_value"))
    auto = args.impl == "auto"
    try:
        seconds, bgnbd, gamma_gamma, predicted = (with_lifetimes if impl == "lifetimes" else with_scipy)(
            f, r, t, m, args)
    except Exception as e:  # lifetimes' ConvergenceError: its Gamma-Gamma fit fails on 1M generated customers
        if not (auto and impl == "lifetimes" and type(e).__name__ == "ConvergenceError"):
            raise
        print(f"lifetimes did not converge ({type(e).__name__}); fitting with scipy instead", file=sys.stderr)
        impl = "scipy"
        seconds, bgnbd, gamma_gamma, predicted = with_scipy(f, r, t, m, args)
    if args.out:
        pq.write_table(pa.table({"customer_id": table.column("customer_id"), **predicted}), args.out,
                       compression="zstd")
    print(json.dumps({
        "impl": impl, "customers": len(f), "fit_predict_seconds": seconds,
        "bgnbd": {k: float(v) for k, v in bgnbd.items()},
        "gamma_gamma": {k: float(v) for k, v in gamma_gamma.items()},
    }))


if __name__ == "__main__":
    main()
