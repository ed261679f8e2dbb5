#!/usr/bin/env python
"""`distillkit fetch-models` for a clone: `python scripts/fetch_models.py` takes the same flags (see `--help`)."""

from distillkit.commands import script_main

if __name__ == "__main__":
    script_main("fetch-models")
