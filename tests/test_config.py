"""cendetect.config: mmdetection config text read as data, and test-time pre-processing from it."""

from __future__ import annotations

import keyword
import os
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cendetect.config import (
    ConfigError,
    PreprocessConfig,
    model_config_from,
    num_classes_from,
    preprocess_config_from,
)
from cendetect.config_text import parse_config_text
from tests.conftest import DATA

FIXTURE_CONFIGS = {
    "mmdet/mask_rcnn_r50_fpn": 50,
    "mmdet/mask_rcnn_r101_fpn": 101,
    "mmdet3/mask_rcnn_r50_fpn": 50,
}
IMAGENET = PreprocessConfig(
    img_scale=(1333, 800),
    keep_ratio=True,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
    to_rgb=True,
    size_divisor=32,
)


def _parse(text: str) -> dict:
    return parse_config_text(textwrap.dedent(text), source="snippet.py")


@pytest.mark.parametrize("arch", sorted(FIXTURE_CONFIGS))
def test_fixture_configs_parse(arch: str) -> None:
    path = DATA / arch / "config.py"
    cfg = parse_config_text(path.read_text(), source=str(path))
    model = model_config_from(cfg)
    assert model["type"] == "MaskRCNN"
    assert model["backbone"]["depth"] == FIXTURE_CONFIGS[arch]
    assert model["backbone"]["out_indices"] == (0, 1, 2, 3)  # tuples stay tuples
    assert isinstance(model["neck"]["in_channels"], list)
    assert model["test_cfg"]["rcnn"]["nms"] == {"type": "nms", "iou_threshold": 0.5}
    assert model["train_cfg"]["rcnn"]["assigner"]["ignore_iof_thr"] == -1
    assert num_classes_from(cfg) == 2


@pytest.mark.parametrize("arch", sorted(FIXTURE_CONFIGS))
def test_fixture_preprocess_is_mmdet_default(arch: str) -> None:
    cfg = parse_config_text((DATA / arch / "config.py").read_text())
    assert preprocess_config_from(cfg) == IMAGENET
    assert PreprocessConfig() == IMAGENET


def test_mmdet2_test_pipeline_wins_over_img_norm_cfg() -> None:
    cfg = _parse(
        """
        img_norm_cfg = dict(mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0], to_rgb=False)
        test_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='MultiScaleFlipAug', img_scale=(800, 1333), flip=False, transforms=[
                dict(type='Resize', keep_ratio=True),
                dict(type='RandomFlip'),
                dict(type='Normalize', mean=[10, 20, 30], std=[2, 2, 2], to_rgb=True),
                dict(type='Pad', size_divisor=64),
                dict(type='ImageToTensor', keys=['img']),
            ]),
        ]
        """
    )
    # A keep-ratio scale is (long, short) whatever order the config writes it in.
    assert preprocess_config_from(cfg) == PreprocessConfig(
        img_scale=(1333, 800),
        keep_ratio=True,
        mean=(10.0, 20.0, 30.0),
        std=(2.0, 2.0, 2.0),
        to_rgb=True,
        size_divisor=64,
    )


def test_mmdet2_caffe_style() -> None:
    cfg = _parse(
        """
        img_norm_cfg = dict(mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0], to_rgb=False)
        data = dict(test=dict(type='CocoDataset', pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='MultiScaleFlipAug', img_scale=(1333, 800), flip=False, transforms=[
                dict(type='Resize', keep_ratio=True),
                dict(type='RandomFlip'),
                dict(type='Normalize', mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0],
                     to_rgb=False),
                dict(type='Pad', size_divisor=32),
            ]),
        ]))
        """
    )
    assert preprocess_config_from(cfg) == PreprocessConfig(
        mean=(103.53, 116.28, 123.675), std=(1.0, 1.0, 1.0), to_rgb=False
    )


def test_mmdet2_img_norm_cfg_without_pipeline() -> None:
    cfg = _parse("img_norm_cfg = dict(mean=[103.53, 116.28, 123.675], std=[1, 1, 1], to_rgb=False)")
    assert preprocess_config_from(cfg) == PreprocessConfig(
        mean=(103.53, 116.28, 123.675), std=(1.0, 1.0, 1.0), to_rgb=False
    )
    assert preprocess_config_from(_parse("model = dict(type='MaskRCNN')")) == IMAGENET


def test_mmdet2_resize_without_keep_ratio_keeps_w_h() -> None:
    cfg = _parse(
        """
        test_pipeline = [
            dict(type='Resize', img_scale=(640, 480), keep_ratio=False),
            dict(type='Normalize', mean=[0, 0, 0], std=[1, 1, 1], to_rgb=True),
        ]
        """
    )
    pre = preprocess_config_from(cfg)
    assert (pre.img_scale, pre.keep_ratio, pre.size_divisor) == ((640, 480), False, 1)


def test_mmdet3_caffe_style_and_int_scale() -> None:
    cfg = _parse(
        """
        model = dict(type='MaskRCNN', data_preprocessor=dict(
            type='DetDataPreprocessor', mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0],
            bgr_to_rgb=False, pad_size_divisor=32))
        test_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='mmdet.Resize', scale=800, keep_ratio=True),
            dict(type='PackDetInputs'),
        ]
        """
    )
    assert preprocess_config_from(cfg) == PreprocessConfig(
        img_scale=(800, 800), mean=(103.53, 116.28, 123.675), std=(1.0, 1.0, 1.0), to_rgb=False
    )


def test_mmdet3_dataset_wrapper_and_defaults() -> None:
    # mmcv 2.x Resize defaults to keep_ratio=False; no mean/std means no normalisation.
    cfg = _parse(
        """
        model = dict(type='MaskRCNN', data_preprocessor=dict(type='DetDataPreprocessor'))
        test_dataloader = dict(dataset=dict(type='ConcatDataset', datasets=[
            dict(type='CocoDataset', pipeline=[dict(type='Resize', scale=(512, 384))]),
        ]))
        """
    )
    assert preprocess_config_from(cfg) == PreprocessConfig(
        img_scale=(512, 384),
        keep_ratio=False,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        to_rgb=False,
        size_divisor=1,
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            """
            test_pipeline = [dict(type='MultiScaleFlipAug', img_scale=[(1333, 800), (1666, 1000)],
                                  flip=False, transforms=[dict(type='Resize', keep_ratio=True)])]
            """,
            "multi-scale",
        ),
        (
            """
            test_pipeline = [dict(type='MultiScaleFlipAug', img_scale=(1333, 800), flip=True,
                                  transforms=[dict(type='Resize', keep_ratio=True)])]
            """,
            "flip",
        ),
        (
            """
            model = dict(data_preprocessor=dict(type='DetDataPreprocessor'))
            test_pipeline = [dict(type='TestTimeAug', transforms=[
                [dict(type='Resize', scale=(1333, 800), keep_ratio=True),
                 dict(type='Resize', scale=(1666, 1000), keep_ratio=True)],
                [dict(type='RandomFlip', prob=1.0), dict(type='RandomFlip', prob=0.0)]])]
            """,
            "TestTimeAug",
        ),
        (
            """
            test_pipeline = [dict(type='Resize', img_scale=(1333, 800), keep_ratio=True),
                             dict(type='RandomFlip', flip_ratio=0.5)]
            """,
            "RandomFlip",
        ),
        ("test_pipeline = [dict(type='LoadImageFromFile')]", "no Resize"),
    ],
    ids=["multi-scale", "flip", "tta-3x", "random-flip", "no-resize"],
)
def test_unsupported_test_pipelines(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        preprocess_config_from(_parse(text))


def test_names_and_dict_unpacking() -> None:
    cfg = _parse(
        """
        '''A docstring is inert.'''
        base = dict(a=1, b=[1, 2])
        derived = dict(c=-2.5, **base)
        merged = {**derived, 'd': (None, True, {1, 2})}
        """
    )
    assert cfg["merged"] == {"c": -2.5, "a": 1, "b": [1, 2], "d": (None, True, {1, 2})}
    cfg["derived"]["b"].append(3)
    assert cfg["base"]["b"] == [1, 2]  # names are copied, never shared


@pytest.mark.parametrize(
    ("line", "construct"),
    [
        ("__import__('os').system('touch CENDETECT_CONFIG_EXECUTED')", "call to"),
        ("x = __import__('os').system('touch CENDETECT_CONFIG_EXECUTED')", "call to"),
        ("x = open('CENDETECT_CONFIG_EXECUTED', 'w')", "call to 'open'"),
        ("x = dict.fromkeys([1])", "call to 'dict.fromkeys'"),
        ("x = dict(a=1).keys", "attribute access"),
        ("x = ().__class__", "attribute access"),
        ("x = lambda: open('CENDETECT_CONFIG_EXECUTED', 'w')", "lambda"),
        ('x = f\'{open("CENDETECT_CONFIG_EXECUTED", "w")}\'', "f-string"),
        ("import os", "import"),
        ("from os import system", "import"),
        ("x = [i for i in range(3)]", "comprehension"),
        ("x = 2 ** 1000000", "operator"),
        ("x = undefined_name", "undefined_name"),
        ("x = dict([('a', 1)])", "call to 'dict'"),
        ("def f(): pass", "function definition"),
        ("a, b = 1, 2", "single plain name"),
    ],
)
def test_hostile_text_is_refused_without_running(
    line: str, construct: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "system", lambda *_: pytest.fail("os.system was called"))
    text = f"ok = 1\nalso_ok = dict(a=2)\n{line}\n"
    with pytest.raises(ConfigError, match=construct) as info:
        parse_config_text(text, source="hostile.py")
    assert "hostile.py:3:" in str(info.value)
    assert info.value.lineno == 3 and info.value.source == "hostile.py"
    assert not os.path.exists("CENDETECT_CONFIG_EXECUTED")


def test_syntax_error_names_line() -> None:
    with pytest.raises(ConfigError, match=r"cfg\.py:2: not valid config syntax"):
        parse_config_text("a = 1\nb = dict(\n", source="cfg.py")


_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
_value = st.recursive(
    _leaf | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n)
)


@given(st.dictionaries(_names, _value))
def test_repr_round_trip(values: dict) -> None:
    text = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    assert parse_config_text(text) == values


def test_num_classes_and_model() -> None:
    cascade = _parse(
        "model = dict(roi_head=dict(bbox_head=[dict(num_classes=2), dict(num_classes=2)]))"
    )
    assert num_classes_from(cascade) == 2
    assert num_classes_from(_parse("model = dict(type='RetinaNet')")) is None
    disagree = _parse(
        "model = dict(roi_head=dict(bbox_head=[dict(num_classes=2), dict(num_classes=3)]))"
    )
    with pytest.raises(ConfigError, match="disagree"):
        num_classes_from(disagree)
    with pytest.raises(ConfigError, match="no 'model'"):
        model_config_from(_parse("data = dict()"))
