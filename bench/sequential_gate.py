"""Operating characteristics of the sequential gate, side by side with the fixed-n gate and with naive peeking.

For each metric kind, thousands of synthetic paired samples with a known true effect are decided three ways:

- sequential: the betting confidence sequence at the looks (evaluators.sequential), stopping at the first look
  that decides;
- fixed-n: one one-sided test on the whole set (the normal interval of the paired mean, the large-sample form
  of the gate's bootstrap);
- naive peeking: that same fixed-n interval computed at every look, promoting at the first look where it clears
  (what a user does by hand when looking at the interval after every batch).

At the boundary (true effect = -margin) a pass is a false promotion: sequential and fixed-n keep it at most
alpha, peeking does not. Away from it the table gives power and the examples each gate used.

    .venv/bin/python bench/sequential_gate.py [--reps 4000] [--examples 200] [--plot docs/assets/sequential-oc.png]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import stats as scipy_stats

from evaluators import sequential

ALPHA = 0.05


def continuous(effect: float, rng: np.random.Generator, reps: int, n: int) -> np.ndarray:
    """Differences of a [0, 1] score with mean ``effect`` exactly: effect + 0.3 (2 Beta(2, 2) - 1)."""
    return effect + 0.3 * (2.0 * rng.beta(2.0, 2.0, size=(reps, n)) - 1.0)


def binary(effect: float, rng: np.random.Generator, reps: int, n: int) -> np.ndarray:
    """Paired pass/fail: challenger-only passes with p10, champion-only passes with p01 = 0.15; mean p10 - p01."""
    p01 = 0.15
    u = rng.random(size=(reps, n))
    return np.where(u < p01, -1.0, np.where(u < p01 + p01 + effect, 1.0, 0.0))


KINDS = {  # name: (generator, range width of the differences, margin)
    "continuous (score in [0, 1])": (continuous, 1.0, 0.10),
    "pass/fail (paired 0/1)": (binary, 1.0, 0.05),
}


def decide_all(differences: np.ndarray, width: float, margin: float, looks: list[int], level: float) -> dict:
    reps, n = differences.shape
    value_range = sequential.Range(-width, width)
    x, m = value_range.scale(differences), value_range.position(-margin)
    seq_pass, used = sequential.first_decisions(
        sequential.rejects(x, m, level, +1), sequential.rejects(x, m, level, -1), looks
    )
    peek_pass = np.zeros(reps, dtype=bool)
    z = scipy_stats.norm.ppf(1.0 - level)
    for count in looks:
        part = differences[:, :count]
        low = part.mean(axis=1) - z * part.std(axis=1, ddof=1) / math.sqrt(count)
        peek_pass |= low > -margin
    final = differences.mean(axis=1) - z * differences.std(axis=1, ddof=1) / math.sqrt(n)
    return {
        "sequential": float(seq_pass.mean()),
        "fixed": float((final > -margin).mean()),
        "peeking": float(peek_pass.mean()),
        "used": float(used.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=4000)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--looks", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--plot", default="")
    args = parser.parse_args()
    looks = sequential.looks_at(args.examples, tuple(args.looks))
    rng = np.random.default_rng(0)
    curves = {}
    print(f"alpha {ALPHA}, {args.examples} examples, looks at {looks}, {args.reps} samples per row")
    print(
        "| kind | true effect | sequential pass | fixed-n pass | naive peeking pass | sequential examples (fixed-n) |"
    )
    print("|---|---|---|---|---|---|")
    for kind, (draw, width, margin) in KINDS.items():
        curve = []
        for effect in (-2 * margin, -margin, -margin / 2, 0.0, margin / 2, margin):
            result = decide_all(draw(effect, rng, args.reps, args.examples), width, margin, looks, ALPHA)
            curve.append((effect, result))
            error = math.sqrt(result["sequential"] * (1 - result["sequential"]) / args.reps)
            tag = " (boundary: a pass is a false promotion)" if effect == -margin else ""
            print(
                f"| {kind} | {effect:+.3f}{tag} | {result['sequential']:.3f} ± {error:.3f} | {result['fixed']:.3f} "
                f"| {result['peeking']:.3f} | {result['used']:.0f} ({args.examples}) |"
            )
        curves[kind] = (margin, curve)
    for kind, (margin, curve) in curves.items():
        boundary = dict(curve)[-margin]
        print(
            f"{kind}: at the boundary, sequential {boundary['sequential']:.3f}, fixed-n {boundary['fixed']:.3f}, "
            f"peeking {boundary['peeking']:.3f} (ratio peeking/alpha {boundary['peeking'] / ALPHA:.2f}); "
            f"at a clear effect (+margin) the sequential gate used {dict(curve)[margin]['used'] / args.examples:.0%} of the set"
        )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 2, figsize=(11, 4))
        for kind, (margin, curve) in curves.items():
            effects = [e / margin for e, _ in curve]
            for key, style in (("sequential", "-o"), ("fixed", "--s"), ("peeking", ":^")):
                axes[0].plot(effects, [r[key] for _, r in curve], style, label=f"{key}, {kind}")
            axes[1].plot(effects, [r["used"] / args.examples for _, r in curve], "-o", label=kind)
        axes[0].axhline(ALPHA, color="grey", lw=0.8)
        axes[0].axvline(-1.0, color="grey", lw=0.8, ls="--")
        axes[0].set(xlabel="true effect / margin", ylabel="pass rate", title="pass rate (at -1: false promotion)")
        axes[1].set(xlabel="true effect / margin", ylabel="share of the set used", title="sequential: examples used")
        axes[0].legend(fontsize=7)
        axes[1].legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
