"""Names every layer shares: plain values, no I/O, importing nothing else from ``app``."""
