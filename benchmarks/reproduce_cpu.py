"""Benchmark: `ldseg reproduce --profile cpu` on the real sample data.

Runs the cpu profile (target: < 60 min per dataset on 2 CPU cores) on DRIVE
(its 20 training images; the last 5 are the fixed test split), the GlaS sample
and the knee sample, each into OUT/<name>, and prints the wall time of each.
Not a test: it takes hours in total.

    python benchmarks/reproduce_cpu.py --shared ../shared/data --out /tmp/ldseg_cpu [--only drive]
"""

import argparse
import os
import sys
import time

from ldseg_tf.cli import main as ldseg

DATASETS = {"drive": "drive", "glas": "glas_sample", "knee": "knee_sample"}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "shared", "data"))
    p.add_argument("--out", default="/tmp/ldseg_reproduce_cpu")
    p.add_argument("--only", choices=sorted(DATASETS), action="append")
    args = p.parse_args(argv)
    for name in args.only or DATASETS:
        start = time.time()
        ldseg(["reproduce", "--data", name, "--out", os.path.join(args.out, name),
               "--profile", "cpu", "--data-dir", os.path.join(args.shared, DATASETS[name]),
               "--tfds-dir", os.path.join(args.out, "tfds")])
        minutes = (time.time() - start) / 60
        print(f"{name}: {minutes:.1f} min ({'within' if minutes <= 60 else 'OVER'} the 60-minute "
              f"target)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
