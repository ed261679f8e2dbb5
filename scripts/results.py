#!/usr/bin/env python
"""`distillkit results` for a clone: `python scripts/results.py` takes the same flags (see `--help`)."""

from distillkit.commands import script_main

if __name__ == "__main__":
    script_main("results")
