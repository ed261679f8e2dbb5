#!/usr/bin/env python
"""`distillkit export` for a clone: `python scripts/export.py` takes the same flags (see `--help`)."""

from distillkit.commands import script_main

if __name__ == "__main__":
    script_main("export")
