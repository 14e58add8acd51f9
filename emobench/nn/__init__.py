"""Blocks and models. Importing this package registers every model family."""

from emobench.nn.emo import EMO, EMOConfig, EMOFeatures
from emobench.nn.forms.fused import fuse
from emobench.nn.vit import ViT, ViTConfig
from emobench.nn.pvt import PVT, PVTConfig
from emobench.nn.m2 import AttentionConfig, M2Block, M2BlockConfig
from emobench.nn.mobilenetv2 import MobileNetV2, MobileNetV2Config
from emobench.nn.dense import Detector, DetectorConfig, Segmenter, SegmenterConfig
from emobench.nn.registry import FAMILIES, Family

__all__ = ["EMO", "EMOConfig", "EMOFeatures", "M2Block", "M2BlockConfig", "AttentionConfig", "fuse", "FAMILIES", "Family",
           "ViT", "ViTConfig", "PVT", "PVTConfig", "MobileNetV2", "MobileNetV2Config", "Detector", "DetectorConfig",
           "Segmenter", "SegmenterConfig"]
