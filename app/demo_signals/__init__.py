"""The demo's signal feeds: a deterministic generator (:mod:`app.demo_signals.generator`)."""
