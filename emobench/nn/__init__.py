"""Blocks and models. Importing this package registers every model family."""

from .emo import EMO, EMOConfig, EMOFeatures
from .fused import fuse
from .vit import ViT, ViTConfig
from .pvt import PVT, PVTConfig
from .m2 import AttentionConfig, M2Block, M2BlockConfig
from .mobilenetv2 import MobileNetV2, MobileNetV2Config
from .dense import Detector, DetectorConfig, Segmenter, SegmenterConfig
from .registry import FAMILIES, Family

__all__ = ["EMO", "EMOConfig", "EMOFeatures", "M2Block", "M2BlockConfig", "AttentionConfig", "fuse", "FAMILIES", "Family"]
