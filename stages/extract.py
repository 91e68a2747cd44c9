"""extract stage: frozen-encoder sequence features for one corpus x modality (the target with its
``extract.target`` overrides); a skip record instead when no model reads them (a modality not in
``model.modalities``, the swap extractor with ``adapt.swap: false``, the empty target of
``corpora.target: none``)."""

from __future__ import annotations

import argparse
import dataclasses

from mer import schema
from mer.extract import extract_or_skip
from mer.logs import run_stage, setup_logging
from mer.params import load_section
from mer.vocab import MODALITIES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metadata", required=True, help="metadata table (parquet)")
    parser.add_argument("--modality", required=True, choices=MODALITIES)
    parser.add_argument("--out", required=True, help="feature directory to write")
    parser.add_argument("--section", help="extract subsection to use instead of the modality's (audio_swap)")
    parser.add_argument(
        "--corpus", choices=("source", "target"), default="source",
        help="the corpus's role: the target's extraction applies extract.target's overrides",
    )  # fmt: skip
    args = parser.parse_args()
    setup_logging()
    cfg = load_section("extract").for_corpus(args.corpus)
    swap = None
    if args.section:  # the extractor-swap scenario (audio_swap): needed only with adapt.swap
        cfg = dataclasses.replace(cfg, **{args.modality: getattr(cfg, args.section)})
        swap = load_section("adapt").swap
    extract_or_skip(
        table=schema.read(args.metadata), modality=args.modality, cfg=cfg, out_dir=args.out,
        model_modalities=load_section("model")["modalities"], swap=swap,
    )  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
