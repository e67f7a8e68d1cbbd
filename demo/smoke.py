"""Smoke check run by `make demo` until the demo training lands: classifies the README's worked example."""

import numpy as np

from tb_matmul_explainer import ops


def main():
    a = np.tile(np.arange(0.0, 1.0, 0.1), (10, 1))
    counts, sums, thresholds = ops.matmul_classify(a, a, confidence=0.65, return_thresholds=True)
    print(f"thresholds: {[float(t) for t in thresholds]}")
    for i, term in enumerate(ops.TERMS):
        total = float(np.sum(counts[..., i]))
        if total:
            print(f"{term}: count {total:.0f}, sum {float(np.sum(sums[..., i])):.4f}")
    print(f"sum of sums {float(np.sum(sums)):.4f} == sum of a @ a {float(np.sum(a @ a)):.4f}")


if __name__ == "__main__":
    main()
