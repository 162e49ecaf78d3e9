"""Coverage of the total-CLV interval on data drawn from known parameters.

    python benchmarks/coverage_clv.py                       # 200 datasets of 2,000 generated customers
    python benchmarks/coverage_clv.py --draws 500 --customers 5000

Each dataset is generated (seeded) with the generator's BG/NBD and Gamma-Gamma
parameters; the models are fitted, the 90 % interval of the total 12-month CLV
computed, and compared with the total the true parameters give the same
customers. Prints the share of intervals that contain it (nominal 90 %).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from clm_core.clv import FittedCLV, fit_clv_models, predict_clv  # noqa: E402
from clm_core.clv_models import BetaGeoModel, GammaGammaModel  # noqa: E402
from clm_core.generator import GeneratorParams  # noqa: E402
from test_clv import _generated_summary  # noqa: E402  (the summary built with pandas, as the test does)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--customers", type=int, default=2_000)
    args = parser.parse_args()
    truth = GeneratorParams()
    true_models = FittedCLV("bgnbd", BetaGeoModel.from_params(r=truth.r, alpha=truth.alpha, a=truth.a, b=truth.b),
                            GammaGammaModel.from_params(p=truth.p, q=truth.q, gamma=truth.gamma), "week")
    started, covered, widths = time.perf_counter(), [], []
    for seed in range(args.draws):
        summary = _generated_summary(args.customers, 10_000 + seed, truth)
        forecast = predict_clv(summary, fit_clv_models(summary))
        low, high = forecast.total_interval
        true_total = predict_clv(summary, true_models).total
        covered.append(low <= true_total <= high)
        widths.append((high - low) / forecast.total)
    coverage = float(np.mean(covered))
    se = np.sqrt(coverage * (1 - coverage) / args.draws)
    print(f"90 % interval of the total CLV contained the true expected value in {sum(covered)} of {args.draws} "
          f"datasets of {args.customers:,} customers: coverage {coverage:.1%} (+- {1.96 * se:.1%}); median width "
          f"{np.median(widths):.1%} of the total; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
