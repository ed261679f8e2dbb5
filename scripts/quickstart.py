#!/usr/bin/env python
"""`distillkit quickstart` for a clone: `python scripts/quickstart.py` takes the same flags (see `--help`)."""

from distillkit.commands import script_main

if __name__ == "__main__":
    script_main("quickstart")
