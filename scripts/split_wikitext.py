#!/usr/bin/env python
"""Cut a WikiText raw file by article into train.txt and validation.txt (no article on both sides), the files the
causal-LM benchmark reads when WikiText-2's own training file is not at hand:

    python scripts/split_wikitext.py ../shared/data/wikitext-2-raw/wiki.valid.raw \\
        --out ~/.cache/distillkit-bench/wikitext2 --validation_articles 10 --train_articles 30
"""

from __future__ import annotations

import argparse
import json
import sys

from distillkit.data.lm_text import split_wikitext


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a WikiText raw file (wiki.valid.raw)")
    parser.add_argument("--out", required=True, help="folder for train.txt and validation.txt")
    parser.add_argument("--validation_articles", type=int, default=10, help="the last N articles are held out")
    parser.add_argument("--train_articles", type=int, help="train on the first N articles (default: all the others)")
    args = parser.parse_args(argv)
    try:
        counts = split_wikitext(args.source, args.out, args.validation_articles, args.train_articles)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
