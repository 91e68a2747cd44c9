"""Models: the fusion classifier and the feature adapter."""

from mer.models.adapter import AdapterConfig, FeatureAdapter
from mer.models.fusion import FusionConfig, FusionModel, FusionOutput

__all__ = ["AdapterConfig", "FeatureAdapter", "FusionConfig", "FusionModel", "FusionOutput"]
