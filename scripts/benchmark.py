#!/usr/bin/env python
"""`distillkit benchmark` for a clone: `python scripts/benchmark.py` takes the same flags (see `--help`)."""

from distillkit.commands import script_main

if __name__ == "__main__":
    script_main("benchmark")
