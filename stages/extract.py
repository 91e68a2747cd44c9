"""extract stage: frozen-encoder sequence features for one corpus x modality."""

from __future__ import annotations

import argparse
import dataclasses

from mer import schema
from mer.extract import extract_modality
from mer.logs import run_stage, setup_logging
from mer.params import load_section
from mer.vocab import MODALITIES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metadata", required=True, help="metadata table (parquet)")
    parser.add_argument("--modality", required=True, choices=MODALITIES)
    parser.add_argument("--out", required=True, help="feature directory to write")
    parser.add_argument("--section", help="extract subsection to use instead of the modality's (audio_swap)")
    args = parser.parse_args()
    setup_logging()
    cfg = load_section("extract")
    if args.section:
        cfg = dataclasses.replace(cfg, **{args.modality: getattr(cfg, args.section)})
    extract_modality(table=schema.read(args.metadata), modality=args.modality, cfg=cfg, out_dir=args.out)


if __name__ == "__main__":
    run_stage(main)
