"""Builds aigc, runs `aigc bench` and its PyTorch twin interleaved (A B A B ...), and prints
the medians and the ratios aigc / PyTorch for every preset and mode.

    python3 benches/compare.py                 # 3 rounds of everything
    python3 benches/compare.py --rounds 5 --presets nanogpt-small --modes train
"""

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAST = re.compile(r"(\w+)_per_s=([\d.]+) peak_rss_mb=([\d.]+)")


def last_line(cmd):
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    match = LAST.search(out.strip().splitlines()[-1])
    if not match:
        sys.exit(f"unexpected output of {' '.join(cmd)}:\n{out}")
    return float(match.group(2)), float(match.group(3))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--presets", nargs="+", default=["nanogpt-small", "nanogpt-big"])
    parser.add_argument("--modes", nargs="+", default=["train", "generate"])
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    threads = str(args.threads)
    print("preset mode: aigc / torch tokens/s (median of rounds), ratio; peak RSS MB aigc / torch")
    for preset in args.presets:
        for mode in args.modes:
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(
                    last_line(["target/release/aigc", "--threads", threads, "bench", mode,
                               "--preset", preset])
                )
                theirs.append(
                    last_line([sys.executable, "benches/torch_twin.py", mode, "--preset", preset,
                               "--threads", threads])
                )
            a = statistics.median(r[0] for r in ours)
            b = statistics.median(r[0] for r in theirs)
            rss_a = max(r[1] for r in ours)
            rss_b = max(r[1] for r in theirs)
            print(f"{preset} {mode}: {a:.0f} / {b:.0f} = {a / b:.2f}x; "
                  f"RSS {rss_a:.0f} / {rss_b:.0f}")
            print(f"  rounds: aigc {' '.join(f'{r[0]:.0f}' for r in ours)}; "
                  f"torch {' '.join(f'{r[0]:.0f}' for r in theirs)}", flush=True)


if __name__ == "__main__":
    main()
