"""Benchmarks (``make bench``): figures beside a floor measured in the same run, as ratios."""
