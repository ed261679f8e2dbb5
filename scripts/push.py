#!/usr/bin/env python
"""`distillkit push` for a clone: `python scripts/push.py` takes the same flags (see `--help`)."""

from distillkit.commands import script_main

if __name__ == "__main__":
    script_main("push")
