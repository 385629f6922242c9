"""``python -m bench`` (``make bench``) runs every benchmark; ``--only NAME`` (repeatable) runs
those named: pull, push_plan, push, recompute, webhooks, console, partition. Other arguments go
to the benchmarks run (``python -m bench --only partition --accounts 30000``)."""

import argparse
import sys
from collections.abc import Callable

from bench.console import main as console
from bench.partition import main as partition
from bench.pull import main as pull
from bench.push import main as push
from bench.push_plan import main as push_plan
from bench.recompute import main as recompute
from bench.webhooks import main as webhooks

BENCHES: dict[str, Callable[[], object]] = {
    "pull": pull,
    "push_plan": push_plan,
    "push": push,
    "recompute": recompute,
    "webhooks": lambda: webhooks([]),  # the figures: 100-event batches; 100/s for 60 s
    "console": console,  # every console page's p95 at 100,000 accounts and 1M snapshots (#21)
    "partition": lambda: partition(sys.argv[1:]),  # 1 worker vs 2 on Redis (#19 item 9)
}

parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
parser.add_argument("--only", action="append", choices=sorted(BENCHES))
args, rest = parser.parse_known_args()
sys.argv = [sys.argv[0], *rest]
for name, bench in BENCHES.items():
    if args.only is None or name in args.only:
        bench()
