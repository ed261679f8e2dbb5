#!/usr/bin/env python
"""`distillkit distill` for a clone: `python scripts/distill.py` takes the same flags (see `--help`)."""

from distillkit.commands import script_main

if __name__ == "__main__":
    script_main("distill")
