"""mer: a reproducible DVC pipeline for multimodal (text, speech, face) emotion recognition."""

__version__ = "0.1.0"
