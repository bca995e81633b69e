"""Parts of benchmarks/train_speed.py: one module per framework, plus timing and the report."""
