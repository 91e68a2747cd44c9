"""Does MediaPipe find the synthetic corpus's drawn faces? Fraction of frames where facemesh-65
sees a face (detector score >= 0.5 and landmark presence >= 0.5), per frame size, domain and
video condition, plus the time per frame.

The synthetic faces are cartoons (an ellipse, round eyes, stroke brows and mouth): BlazeFace was
trained on photographs, so a low fraction is expected; ``blank`` / ``occluded`` frames must give
0 (no false faces). Measured 2026-11-26 on the 2-core CPU (4 speakers x 4 emotions x 4 frames
per cell; ``python bench/facemesh_synthetic.py``)::

    size  domain  clear  occluded  blank
    64    source  4/64   0/64      0/64
    64    target  12/64  0/64      0/64
    128   source  0/64   0/64      0/64
    128   target  5/64   0/64      0/64
    256   source  0/64   0/64      0/64
    256   target  6/64   0/64      0/64

So ``extract.video.model: facemesh-65`` on the synthetic corpus quarantines most clips ("no
face") and the extract stage fails on purpose (more than half quarantined): use it on corpora
with filmed faces (MOSI / MOSEI / MELD / CREMA-D / RAVDESS video).

    .venv/bin/python bench/facemesh_synthetic.py [--sizes 64 128 256] [--frames 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mer.corpora import synthetic
from mer.encoders.facemesh import FaceMeshEncoder
from mer.params import SyntheticParams
from mer.vocab import EMOTIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--frames", type=int, default=4, help="frames per clip")
    parser.add_argument("--speakers", type=int, default=4, help="speakers per domain")
    args = parser.parse_args()
    encoder = FaceMeshEncoder.from_spec()
    print("size  domain  clear  occluded  blank  ms/frame")
    for size in args.sizes:
        cfg = SyntheticParams(video_size=size)
        for domain in ("source", "target"):
            style = synthetic.domain_style(domain, cfg.target_shift)
            rng = np.random.default_rng(0)
            cells, seconds, frames = [], 0.0, 0
            for condition in ("clear", "occluded", "blank"):
                found = total = 0
                for speaker in synthetic.speakers_of(cfg, domain)[: args.speakers]:
                    for emotion in EMOTIONS:
                        clip = synthetic.render_face(
                            rng, emotion, condition, args.frames, size, speaker, style
                        )
                        for frame in clip:
                            started = time.perf_counter()
                            found += encoder.landmarker(frame) is not None
                            seconds += time.perf_counter() - started
                            total += 1
                frames += total
                cells.append(f"{found}/{total}")
            clear, occluded, blank = cells
            milliseconds = 1000 * seconds / frames
            print(f"{size:<5} {domain:<7} {clear:<6} {occluded:<9} {blank:<6} {milliseconds:.1f}")


if __name__ == "__main__":
    main()
