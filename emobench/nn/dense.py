"""Down-stream networks: a zoo backbone's stage maps → an optional neck → a detection or segmentation head.

The necks and heads are those the official EMO down-stream models were trained with (mmdetection's SSDNeck,
SSDHead, FPN and RetinaHead; mmsegmentation's ASPPHead, PSPHead and FCNHead), built from zoo data (the
configurations in ../shared/reference/downstream) with mmcv's module and parameter names, so the official
``backbone.`` / ``neck.`` / ``bbox_head.`` / ``decode_head.`` / ``auxiliary_head.`` state dicts load as they are.

Outputs are the raw head tensors, as a flat tuple: detection gives every level's class scores, then every level's
box regressions; segmentation gives the decode head's logits resized (bilinear) to the input. No anchors, no
decoding, no NMS, no loss: emobench measures networks. The auxiliary FCN head (a training aid of
mmsegmentation, counted in the reported parameters) runs only in training mode, as in mmsegmentation, where
forward also returns its logits.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Union

import torch
import torch.nn.functional as F
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from torch import nn

from emobench.errors import ZooError
from emobench.nn.layers import MAX_BLOCKS, MAX_CHANNELS, MAX_CLASSES, MAX_DILATION, MAX_KERNEL, Channels, Eps, Kernel
from emobench.nn.registry import ALL_FORMS, FAMILIES, register_family

Act = Literal["relu", "relu6"] | None
_MAX_LEVELS = 16  #: feature levels of a neck or head, dilations and pool scales
_MAX_ANCHORS = 1024  #: anchors per location
_ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


class ConvModule(nn.Module):
    """mmcv's ``ConvModule``: ``conv`` → ``bn`` → ``activate`` (bias only without a norm, like mmcv's 'auto')."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 groups: int = 1, norm_eps: float | None = 1e-5, act: Act = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias=norm_eps is None)
        self.bn = nn.BatchNorm2d(cout, eps=norm_eps) if norm_eps is not None else None
        self.activate = _ACTS[act]() if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.activate(x) if self.activate is not None else x


class DepthwiseSeparableConvModule(nn.Module):
    """mmcv's depth-wise separable conv: a depth-wise ``ConvModule`` then a 1×1 ``ConvModule``, each with norm and act."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, norm_eps: float, act: Act) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, kernel, stride, padding, groups=cin, norm_eps=norm_eps, act=act)
        self.pointwise_conv = ConvModule(cin, cout, 1, norm_eps=norm_eps, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _SSDLitePart(_Part):
    """What SSDLite's neck and head share: depth-wise separable convs, BatchNorm ε and activation."""

    use_depthwise: bool = True
    norm_eps: Eps = 1e-3
    act: Act = "relu6"


# ---- necks ----------------------------------------------------------------------------------------------------

class SSDNeckConfig(_SSDLitePart):
    """mmdet ``SSDNeck`` (SSDLite with ``use_depthwise``): extra levels of 1×1 reduce + depth-wise separable conv."""

    type: Literal["ssd"]
    out_channels: list[Annotated[int, Field(ge=2, le=MAX_CHANNELS)]] = Field(min_length=1, max_length=_MAX_LEVELS)
    level_strides: list[Annotated[int, Field(ge=1, le=MAX_KERNEL)]]
    level_paddings: list[Annotated[int, Field(ge=0, le=MAX_KERNEL)]]
    last_kernel_size: Kernel = 3


class SSDNeck(nn.Module):
    def __init__(self, in_channels: list[int], cfg: SSDNeckConfig) -> None:
        super().__init__()
        extra = cfg.out_channels[len(in_channels):]
        if len(extra) != len(cfg.level_strides) or len(extra) != len(cfg.level_paddings):
            raise ValueError("SSD neck: one stride and one padding per extra level")
        self.extra_layers = nn.ModuleList()
        for i, (cout, stride, padding) in enumerate(zip(extra, cfg.level_strides, cfg.level_paddings)):
            kernel = cfg.last_kernel_size if i == len(extra) - 1 else 3
            cin = cfg.out_channels[len(in_channels) - 1 + i]
            second = (DepthwiseSeparableConvModule(cout // 2, cout, kernel, stride, padding, cfg.norm_eps, cfg.act)
                      if cfg.use_depthwise else
                      ConvModule(cout // 2, cout, kernel, stride, padding, norm_eps=cfg.norm_eps, act=cfg.act))
            self.extra_layers.append(nn.Sequential(ConvModule(cin, cout // 2, 1, norm_eps=cfg.norm_eps, act=cfg.act), second))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = list(feats)
        x = outs[-1]
        for layer in self.extra_layers:
            x = layer(x)
            outs.append(x)
        return outs


class FPNConfig(_Part):
    """mmdet ``FPN``: 1×1 laterals, top-down nearest upsampling, 3×3 outputs, extra stride-2 levels."""

    type: Literal["fpn"]
    out_channels: Channels = 256
    start_level: int = Field(0, ge=0)
    num_outs: int = Field(5, ge=1, le=_MAX_LEVELS)
    add_extra_convs: Literal["on_input", "on_lateral", "on_output"] | None = None


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], cfg: FPNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        used = in_channels[cfg.start_level:]
        if not used:
            raise ValueError("FPN: start_level leaves no input level")
        out = cfg.out_channels
        self.lateral_convs = nn.ModuleList(ConvModule(c, out, 1, norm_eps=None, act=None) for c in used)
        self.fpn_convs = nn.ModuleList(ConvModule(out, out, 3, padding=1, norm_eps=None, act=None) for _ in used)
        extra = cfg.num_outs - len(used)
        if cfg.add_extra_convs:
            for i in range(extra):
                cin = used[-1] if i == 0 and cfg.add_extra_convs == "on_input" else out
                self.fpn_convs.append(ConvModule(cin, out, 3, stride=2, padding=1, norm_eps=None, act=None))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        cfg = self.cfg
        inputs = feats[cfg.start_level:]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
        used = len(laterals)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(used)]
        if cfg.num_outs > used:
            if not cfg.add_extra_convs:  # mmdet: max-pool the last output
                for _ in range(cfg.num_outs - used):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                source = {"on_input": inputs[-1], "on_lateral": laterals[-1], "on_output": outs[-1]}[cfg.add_extra_convs]
                outs.append(self.fpn_convs[used](source))
                for i in range(used + 1, cfg.num_outs):
                    outs.append(self.fpn_convs[i](outs[-1]))
        return outs


# ---- detection heads ------------------------------------------------------------------------------------------

class SSDHeadConfig(_SSDLitePart):
    """mmdet ``SSDHead`` (SSDLite with ``use_depthwise``): per level a depth-wise 3×3 then a 1×1 predictor.
    Class scores include the background class (softmax): ``num_classes + 1`` per anchor."""

    type: Literal["ssd"]
    num_classes: int = Field(80, ge=1, le=MAX_CLASSES)
    num_anchors: list[Annotated[int, Field(ge=1, le=_MAX_ANCHORS)]] = Field(description="anchors per location, per level")


class SSDHead(nn.Module):
    def __init__(self, in_channels: list[int], cfg: SSDHeadConfig) -> None:
        super().__init__()
        if len(cfg.num_anchors) != len(in_channels):
            raise ValueError(f"SSD head: {len(in_channels)} levels but {len(cfg.num_anchors)} anchor counts")
        self.cls_convs, self.reg_convs = nn.ModuleList(), nn.ModuleList()
        for c, anchors in zip(in_channels, cfg.num_anchors):
            for convs, per_anchor in ((self.cls_convs, cfg.num_classes + 1), (self.reg_convs, 4)):
                layers: list[nn.Module] = []
                if cfg.use_depthwise:
                    layers.append(ConvModule(c, c, 3, padding=1, groups=c, norm_eps=cfg.norm_eps, act=cfg.act))
                    layers.append(nn.Conv2d(c, anchors * per_anchor, 1))
                else:
                    layers.append(nn.Conv2d(c, anchors * per_anchor, 3, padding=1))
                convs.append(nn.Sequential(*layers))

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        cls = [conv(x) for conv, x in zip(self.cls_convs, feats)]
        reg = [conv(x) for conv, x in zip(self.reg_convs, feats)]
        return (*cls, *reg)


class RetinaHeadConfig(_Part):
    """mmdet ``RetinaHead``: one tower of stacked 3×3 convs (ReLU) for classes and one for boxes, shared by all
    levels; sigmoid classification (``num_classes`` per anchor)."""

    type: Literal["retina"]
    num_classes: int = Field(80, ge=1, le=MAX_CLASSES)
    stacked_convs: int = Field(4, ge=0, le=MAX_BLOCKS)
    feat_channels: Channels = 256
    num_anchors: int = Field(9, ge=1, le=_MAX_ANCHORS)


class RetinaHead(nn.Module):
    def __init__(self, in_channels: list[int], cfg: RetinaHeadConfig) -> None:
        super().__init__()
        if len(set(in_channels)) != 1:
            raise ValueError("RetinaNet head: every level must have the same width (put an FPN before it)")
        cin, feat = in_channels[0], cfg.feat_channels

        def tower() -> nn.ModuleList:  # stacked 3×3 convs with ReLU, no norm
            return nn.ModuleList(ConvModule(cin if i == 0 else feat, feat, 3, padding=1, norm_eps=None)
                                 for i in range(cfg.stacked_convs))

        self.cls_convs, self.reg_convs = tower(), tower()
        last = feat if cfg.stacked_convs else cin
        self.retina_cls = nn.Conv2d(last, cfg.num_anchors * cfg.num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(last, cfg.num_anchors * 4, 3, padding=1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        cls, reg = [], []
        for x in feats:
            c, r = x, x
            for conv in self.cls_convs:
                c = conv(c)
            for conv in self.reg_convs:
                r = conv(r)
            cls.append(self.retina_cls(c))
            reg.append(self.retina_reg(r))
        return (*cls, *reg)


# ---- segmentation heads ---------------------------------------------------------------------------------------

class _SegHeadConfig(_Part):
    in_index: int = Field(-1, description="which backbone output the head reads")
    channels: Channels = 256
    num_classes: int = Field(150, ge=1, le=MAX_CLASSES)
    norm_eps: Eps = 1e-5
    dropout: float = Field(0.1, ge=0, lt=1)


class ASPPHeadConfig(_SegHeadConfig):
    """mmseg ``ASPPHead`` (DeepLabv3): image pooling + 1×1 and dilated 3×3 branches, concatenated, 3×3 bottleneck."""

    type: Literal["aspp"]
    dilations: list[Annotated[int, Field(ge=1, le=MAX_DILATION)]] = Field([1, 6, 12, 18], max_length=_MAX_LEVELS)


class PSPHeadConfig(_SegHeadConfig):
    """mmseg ``PSPHead`` (PSPNet): pyramid pooling at ``pool_scales``, concatenated with the input, 3×3 bottleneck."""

    type: Literal["psp"]
    pool_scales: list[Annotated[int, Field(ge=1, le=MAX_KERNEL)]] = Field([1, 2, 3, 6], max_length=_MAX_LEVELS)


class FCNHeadConfig(_SegHeadConfig):
    """mmseg ``FCNHead`` (the auxiliary head): ``num_convs`` 3×3 ConvModules then the classifier."""

    type: Literal["fcn"]
    num_convs: int = Field(1, ge=0, le=MAX_BLOCKS)
    kernel_size: Kernel = 3


class _SegHead(nn.Module):
    """mmseg ``BaseDecodeHead``: dropout and the 1×1 classifier ``conv_seg`` after the head's features."""

    def __init__(self, cfg: _SegHeadConfig) -> None:
        super().__init__()
        self.in_index = cfg.in_index
        self.dropout = nn.Dropout2d(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(cfg.channels, cfg.num_classes, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.features(feats[self.in_index])))


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPPHead(_SegHead):
    def __init__(self, in_channels: list[int], cfg: ASPPHeadConfig) -> None:
        super().__init__(cfg)
        cin, ch, eps = in_channels[cfg.in_index], cfg.channels, cfg.norm_eps
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvModule(cin, ch, 1, norm_eps=eps))
        self.aspp_modules = nn.ModuleList(
            ConvModule(cin, ch, 1 if d == 1 else 3, dilation=d, padding=0 if d == 1 else d, norm_eps=eps)
            for d in cfg.dilations)
        self.bottleneck = ConvModule((len(cfg.dilations) + 1) * ch, ch, 3, padding=1, norm_eps=eps)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        outs = [_resize(self.image_pool(x), x.shape[2:])] + [m(x) for m in self.aspp_modules]
        return self.bottleneck(torch.cat(outs, 1))


class PSPHead(_SegHead):
    def __init__(self, in_channels: list[int], cfg: PSPHeadConfig) -> None:
        super().__init__(cfg)
        cin, ch, eps = in_channels[cfg.in_index], cfg.channels, cfg.norm_eps
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(cin, ch, 1, norm_eps=eps)) for s in cfg.pool_scales)
        self.bottleneck = ConvModule(cin + len(cfg.pool_scales) * ch, ch, 3, padding=1, norm_eps=eps)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x] + [_resize(m(x), x.shape[2:]) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, 1))


class FCNHead(_SegHead):
    def __init__(self, in_channels: list[int], cfg: FCNHeadConfig) -> None:
        super().__init__(cfg)
        cin, ch, k = in_channels[cfg.in_index], cfg.channels, cfg.kernel_size
        self.convs = nn.Sequential(*[ConvModule(cin if i == 0 else ch, ch, k, padding=k // 2, norm_eps=cfg.norm_eps)
                                     for i in range(cfg.num_convs)]) if cfg.num_convs else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


NeckConfig = Annotated[Union[SSDNeckConfig, FPNConfig], Field(discriminator="type")]
DetHeadConfig = Annotated[Union[SSDHeadConfig, RetinaHeadConfig], Field(discriminator="type")]
SegHeadConfig = Annotated[Union[ASPPHeadConfig, PSPHeadConfig, FCNHeadConfig], Field(discriminator="type")]

_BUILDERS = {SSDNeckConfig: SSDNeck, FPNConfig: FPN, SSDHeadConfig: SSDHead, RetinaHeadConfig: RetinaHead,
             ASPPHeadConfig: ASPPHead, PSPHeadConfig: PSPHead, FCNHeadConfig: FCNHead}


def _neck_channels(in_channels: list[int], cfg) -> list[int]:
    if cfg is None:
        return in_channels
    if isinstance(cfg, SSDNeckConfig):
        return list(cfg.out_channels)
    return [cfg.out_channels] * cfg.num_outs


# ---- networks -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BoundBackbone:
    """A down-stream model's backbone as the zoo resolved it: its entry's name, family and validated config."""

    name: str
    family: str
    config: BaseModel


class _DenseConfig(_Part):
    backbone: str = Field(description="a zoo entry whose network has stages (EMO, MobileNetV2)")
    backbone_args: dict[str, Any] = Field(default_factory=dict, description="overrides of the backbone's config")
    out_indices: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=_MAX_LEVELS,
                                                            description="stage maps passed on (0 = stem … 4 = stride 32)")
    # set by the zoo when it validates the entry (bind_backbone), so building never looks a name up
    _bound: BoundBackbone | None = PrivateAttr(None)

    @property
    def bound_backbone(self) -> BoundBackbone:
        if self._bound is None:
            raise ValueError(f"backbone '{self.backbone}' is not resolved: build down-stream models through the zoo "
                             f"(emobench.create_model), which resolves it")
        return self._bound


def bind_backbone(cfg: _DenseConfig, lookup) -> None:
    """Resolve ``cfg``'s backbone with the zoo's ``lookup(name, overrides) -> (family, config)``, and check the
    levels the neck and heads take against the backbone's stages (built on the meta device: no memory)."""
    family, config = lookup(cfg.backbone, cfg.backbone_args)
    record = FAMILIES[family]
    if record.stages is None:
        raise ZooError(f"backbone: '{cfg.backbone}' ({family}) has no stages to take maps from")
    with torch.device("meta"):
        channels = [c for _, c in record.stages(record.build(config))]
    bad = [i for i in cfg.out_indices if i >= len(channels)]
    if bad:
        raise ZooError(f"out_indices: {bad} outside the backbone's {len(channels)} stages (0 to {len(channels) - 1})")
    _check_levels(cfg, [channels[i] for i in cfg.out_indices])
    cfg._bound = BoundBackbone(cfg.backbone, family, config)


def _check_levels(cfg: _DenseConfig, chans: list[int]) -> None:
    """What the neck and heads need of the backbone maps they take (``chans``: the channels of each)."""
    levels = len(chans)
    for name in ("decode_head", "auxiliary_head"):
        head = getattr(cfg, name, None)
        if head is not None and not -levels <= head.in_index < levels:
            raise ZooError(f"{name}.in_index: {head.in_index} outside the {levels} backbone maps of out_indices")
    neck = getattr(cfg, "neck", None)
    if isinstance(neck, SSDNeckConfig):
        extra = len(neck.out_channels) - levels
        if neck.out_channels[:levels] != chans or extra < 0:
            raise ZooError(f"neck.out_channels must start with the backbone maps' channels {chans}, got {neck.out_channels}")
        if len(neck.level_strides) != extra or len(neck.level_paddings) != extra:
            raise ZooError(f"neck: {extra} extra levels need {extra} level_strides and level_paddings, got "
                           f"{len(neck.level_strides)} and {len(neck.level_paddings)}")
    if isinstance(neck, FPNConfig):
        if neck.start_level >= levels:
            raise ZooError(f"neck.start_level={neck.start_level} leaves none of the {levels} backbone maps")
        if neck.num_outs < levels - neck.start_level:
            raise ZooError(f"neck.num_outs={neck.num_outs} is fewer than the {levels - neck.start_level} maps it takes")
    head = getattr(cfg, "bbox_head", None)
    outs = _neck_channels(chans, neck)
    if isinstance(head, SSDHeadConfig) and len(head.num_anchors) != len(outs):
        raise ZooError(f"bbox_head.num_anchors: one count per level ({len(outs)}), got {head.num_anchors}")
    if isinstance(head, RetinaHeadConfig) and len(set(outs)) != 1:
        raise ZooError(f"bbox_head: the RetinaNet head needs levels of one width (an FPN neck), got {outs}")


class DetectorConfig(_DenseConfig):
    neck: NeckConfig | None = None
    bbox_head: DetHeadConfig


class SegmenterConfig(_DenseConfig):
    decode_head: SegHeadConfig
    auxiliary_head: SegHeadConfig | None = None


class Backbone(nn.Module):
    """A zoo network's stages without its classification norm and head (``backbone.stage0…`` keys, as the
    official down-stream backbones): returns the maps of ``out_indices``."""

    def __init__(self, bound: BoundBackbone, out_indices: list[int]) -> None:
        super().__init__()
        entry = bound
        family = FAMILIES[entry.family]
        if family.stages is None:
            raise ValueError(f"backbone '{entry.name}' ({entry.family}) has no stages to take maps from")
        stages = family.stages(family.build(entry.config))
        bad = [i for i in out_indices if not 0 <= i < len(stages)]
        if bad:
            raise ValueError(f"out_indices {bad} outside the backbone's {len(stages)} stages")
        self.out_indices = list(out_indices)
        self.entry = entry  # the resolved backbone: inference forms rebuild its network around these stages
        self.channels = [stages[i][1] for i in out_indices]
        for i, (stage, _) in enumerate(stages[: max(out_indices) + 1]):  # later stages are never used
            self.add_module(f"stage{i}", stage)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(max(self.out_indices) + 1):
            x = getattr(self, f"stage{i}")(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


class FormulatedBackbone(nn.Module):
    """A :class:`Backbone` as an inference form of its EMO (fused, mobile …): the same maps from that form's
    ``forward_stages``."""

    def __init__(self, net: nn.Module, out_indices: list[int], channels: list[int]) -> None:
        super().__init__()
        self.net, self.out_indices, self.channels = net, list(out_indices), list(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = self.net.forward_stages(x)
        return [outs[i] for i in self.out_indices]


class _DenseForms:
    """Inference forms of a down-stream model: the neck and heads stay, the EMO backbone takes the form
    (:mod:`emobench.nn.forms`); the formulations find these methods by name."""

    backbone: Backbone

    def form_unsupported(self) -> str | None:
        family = self.backbone.entry.family
        if family != "emo":
            return f"inference forms of a down-stream model need an EMO backbone, not {family}"
        if len(self.backbone.out_indices) and max(self.backbone.out_indices) != 4:
            return "inference forms run every EMO stage: the backbone must end at stage 4"
        return None

    def backbone_network(self) -> nn.Module:
        """The backbone's EMO network (no classifier) holding this model's backbone weights."""
        net = FAMILIES["emo"].build(self.backbone.entry.config).eval()
        missing, unexpected = net.load_state_dict(self.backbone.state_dict(), strict=False)
        if unexpected or any(not k.startswith(("norm.", "head.")) for k in missing):
            raise ValueError(f"backbone keys do not match its EMO: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return net

    @torch.no_grad()
    def formulated(self, build) -> nn.Module:
        """A copy of this model (eval) whose backbone is ``build(EMO)``'s ``forward_stages``."""
        why = self.form_unsupported()
        if why:
            raise ValueError(why)
        out = copy.deepcopy(self).eval()
        out.backbone = FormulatedBackbone(build(self.backbone_network()), self.backbone.out_indices, self.backbone.channels)
        return out.requires_grad_(False)  # an inference form, like every formulation

    def fused_form(self) -> nn.Module:
        from emobench.nn.forms.fused import FusedEMO

        return self.formulated(FusedEMO)


class Detector(_DenseForms, nn.Module):
    """mmdet ``SingleStageDetector`` / ``RetinaNet`` without post-processing: backbone → neck → ``bbox_head``."""

    task = "detection"
    #: top-level children → the part of the network they are (mmdet's names; profile splits its tables by them)
    parts = {"backbone": "backbone", "neck": "neck", "bbox_head": "head"}

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg.bound_backbone, cfg.out_indices)
        chans = self.backbone.channels
        self.neck = _BUILDERS[type(cfg.neck)](chans, cfg.neck) if cfg.neck is not None else None
        self.bbox_head = _BUILDERS[type(cfg.bbox_head)](_neck_channels(chans, cfg.neck), cfg.bbox_head)
        self.num_classes = cfg.bbox_head.num_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.bbox_head(feats)

    def output_names(self) -> list[str]:
        levels = len(_neck_channels(self.backbone.channels, self.cfg.neck))  # the head predicts on every level
        return [f"cls_{i}" for i in range(levels)] + [f"reg_{i}" for i in range(levels)]


class Segmenter(_DenseForms, nn.Module):
    """mmseg ``EncoderDecoder`` in ``whole`` inference mode: backbone → ``decode_head`` → logits resized to the
    input. The ``auxiliary_head`` runs only in training mode (its logits are then a second output)."""

    task = "segmentation"
    parts = {"backbone": "backbone", "decode_head": "head", "auxiliary_head": "auxiliary head"}

    def __init__(self, cfg: SegmenterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg.bound_backbone, cfg.out_indices)
        chans = self.backbone.channels
        self.decode_head = _BUILDERS[type(cfg.decode_head)](chans, cfg.decode_head)
        self.auxiliary_head = (_BUILDERS[type(cfg.auxiliary_head)](chans, cfg.auxiliary_head)
                               if cfg.auxiliary_head is not None else None)
        self.num_classes = cfg.decode_head.num_classes

    def forward(self, x: torch.Tensor):
        feats = self.backbone(x)
        logits = _resize(self.decode_head(feats), x.shape[2:])
        if self.training and self.auxiliary_head is not None:
            return logits, _resize(self.auxiliary_head(feats), x.shape[2:])
        return logits

    def output_names(self) -> list[str]:
        return ["seg_logits"]


def _check(cfg: _DenseConfig, shape: tuple[int, ...]) -> None:
    entry = cfg.bound_backbone
    check = FAMILIES[entry.family].check_input  # the backbone's own input rule (an EMO: stride 32)
    if check is not None:
        check(entry.config, shape)


@register_family("detector", DetectorConfig, "Down-stream detector: zoo backbone → neck → detection head (mmdet)",
                 check_input=_check, bind=bind_backbone, parts=Detector.parts, forms=ALL_FORMS,
                 forms_through_backbone=True)
def build_detector(cfg: DetectorConfig) -> Detector:
    return Detector(cfg)


@register_family("segmenter", SegmenterConfig, "Down-stream segmenter: zoo backbone → decode head (mmseg)",
                 check_input=_check, bind=bind_backbone, parts=Segmenter.parts, forms=ALL_FORMS,
                 forms_through_backbone=True)
def build_segmenter(cfg: SegmenterConfig) -> Segmenter:
    return Segmenter(cfg)
