"""metadata stage: generate the built-in synthetic corpus and write one metadata table per domain."""

from __future__ import annotations

import argparse
from pathlib import Path

from mer import metadata
from mer.corpora import synthetic
from mer.logs import setup_logging
from mer.params import load_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", default="data/raw/synthetic", help="where the corpus files go")
    parser.add_argument("--out", default="data/metadata", help="where <domain>.parquet goes")
    args = parser.parse_args()
    setup_logging()
    cfg = load_section("synthetic")
    for domain in ("source", "target"):
        root = Path(args.raw) / domain
        synthetic.generate(cfg, domain, root)
        table = synthetic.load(root, corpus=f"synthetic_{domain}")
        metadata.validate(table, f"synthetic_{domain}")
        metadata.write(table, Path(args.out) / f"{domain}.parquet")


if __name__ == "__main__":
    main()
