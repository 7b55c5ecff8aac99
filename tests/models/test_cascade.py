"""CascadeRoIHead without deformable convolution: names, semantics, builder, scripting, export.

The cascade fixture's backbone uses DCN (``tests/test_parity_cascade.py`` covers the real
network); here its config is used with ``backbone.dcn`` removed, so the cascade head is tested
with or without the DCN op. ``conv_offset`` weights are the only keys that drop out.
"""

from __future__ import annotations

import copy
import io
import json
import warnings

import cv2
import numpy as np
import pytest
import torch

from cendetect.config import ConfigError, PreprocessConfig
from cendetect.config_text import parse_config_text
from cendetect.engine import preprocess
from cendetect.models import build_model
from cendetect.models.build_heads import build_cascade_roi_head
from cendetect.models.cascade import CascadeRoIHead
from cendetect.models.roi_heads import RoIExtractorConfig
from cendetect.zoo import zoo_model_config
from tests.conftest import DATA
from tests.tolerances import reorder_tol
from tests.weights import rebuild_state_dict

ARCH = "cascade_mask_rcnn_r50_fpn_dconv"
ARCHS = [f"mmdet/{ARCH}", f"mmdet3/{ARCH}"]


def _model_cfg(arch: str) -> dict:
    return parse_config_text((DATA / arch / "config.py").read_text())["model"]


def _without_dcn(model_cfg: dict) -> dict:
    cfg = copy.deepcopy(model_cfg)
    cfg["backbone"].pop("dcn")
    cfg["backbone"].pop("stage_with_dcn")
    return cfg


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_equals_mmdetection_but_conv_offset(arch: str) -> None:
    keys = json.loads((DATA / arch / "keys.json").read_text())
    model = build_model(_without_dcn(_model_cfg(arch)))
    assert isinstance(model.roi_head, CascadeRoIHead)
    ours = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    assert ours == [k for k in keys if ".conv_offset." not in k[0]]
    assert model.roi_head.stds == [
        [0.1, 0.1, 0.2, 0.2],
        [0.05, 0.05, 0.1, 0.1],
        [0.033, 0.033, 0.067, 0.067],
    ]


# ---- semantics against a slow step-by-step reference --------------------------------------


def _decode_reference(boxes: torch.Tensor, deltas: torch.Tensor, stds, h: float, w: float):
    """delta2bbox written out per coordinate (means zero, log-size clamp +-log(1000/16))."""
    out = []
    for (x1, y1, x2, y2), (dx, dy, dw, dh) in zip(boxes.tolist(), deltas.tolist(), strict=True):
        dx, dy = dx * stds[0], dy * stds[1]
        lim = abs(np.log(16 / 1000))
        dw, dh = np.clip(dw * stds[2], -lim, lim), np.clip(dh * stds[3], -lim, lim)
        pw, ph = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + pw * dx, (y1 + y2) / 2 + ph * dy
        gw, gh = pw * np.exp(dw), ph * np.exp(dh)
        out.append(
            [
                min(max(cx - gw / 2, 0), w),
                min(max(cy - gh / 2, 0), h),
                min(max(cx + gw / 2, 0), w),
                min(max(cy + gh / 2, 0), h),
            ]
        )
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 4)


def _reference(head: CascadeRoIHead, feats, proposals, sizes, sfs):
    """mmdet's CascadeRoIHead.simple_test(rescale=True), one image at a time, spelled out."""
    results = []
    for i, props in enumerate(proposals):
        h, w = (float(v) for v in sizes[i])
        boxes = props[:, :4]
        logits = []
        for stage, bbox_head in enumerate(head.bbox_head):
            rois = torch.cat([torch.full_like(boxes[:, :1], float(i)), boxes], dim=1)
            cls, reg = bbox_head(head.bbox_roi_extractor(feats, rois))
            logits.append(cls)
            last_boxes = boxes
            boxes = _decode_reference(boxes, reg, head.stds[stage], h, w)
        # logits averaged over stages, softmax after; final boxes = last stage on its own input
        scores = torch.softmax(sum(logits) / 3.0, dim=1)[:, :-1]
        final = boxes  # last_boxes moved by the last stage's deltas
        assert final.shape == last_boxes.shape
        sf = sfs[i]
        cand_boxes, cand_scores, cand_labels = [], [], []
        for c in range(head.num_classes):
            keep = scores[:, c] > head.score_thr
            cand_boxes.append(final[keep] / sf)
            cand_scores.append(scores[keep, c])
            cand_labels.append(torch.full((int(keep.sum()),), c, dtype=torch.int64))
        b, s, lab = torch.cat(cand_boxes), torch.cat(cand_scores), torch.cat(cand_labels)
        keep = torch.ops.cendetect.batched_nms(b, s, lab, head.iou_threshold)[: head.max_per_img]
        b, s, lab = b[keep] * sf, s[keep], lab[keep]
        mask_rois = torch.cat([torch.full_like(b[:, :1], float(i)), b], dim=1)
        probs = [
            torch.sigmoid(m(head.mask_roi_extractor(feats, mask_rois))) for m in head.mask_head
        ]
        mean = (probs[0] + probs[1] + probs[2]) / 3.0
        results.append((b, s, lab, mean[torch.arange(len(lab)), lab]))
    return results


def test_cascade_head_matches_step_by_step_reference() -> None:
    torch.manual_seed(0)
    head = CascadeRoIHead(
        num_classes=2,
        bbox_roi=RoIExtractorConfig(7),
        mask_roi=RoIExtractorConfig(14),
        in_channels=8,
        fc_out_channels=32,
        mask_convs=1,
    ).eval()
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.2)
    feats = [torch.randn(2, 8, 96 // s, 128 // s) for s in (4, 8, 16, 32, 64)]
    sizes = torch.tensor([[96, 128], [80, 100]])
    sfs = torch.tensor([[1.5, 1.5, 1.5, 1.5], [1.25, 1.2, 1.25, 1.2]])
    proposals = []
    for n, (h, w) in ((60, (96, 128)), (45, (80, 100))):
        xy = torch.rand(n, 2) * torch.tensor([w * 0.7, h * 0.7])
        wh = torch.rand(n, 2) * torch.tensor([w * 0.5, h * 0.5]) + 4
        proposals.append(torch.cat([xy, xy + wh, torch.rand(n, 1)], dim=1))
    with torch.no_grad():
        boxes, scores, labels, masks, ids = head(feats, proposals, sizes, sfs)
        ref = _reference(head, feats, proposals, sizes, sfs)
    assert boxes.shape[0] > 10 and set(labels.tolist()) == {0, 1}
    # The head runs both images' RoIs through each fc layer in one GEMM, the reference one
    # image at a time: oneMKL blocks the two differently, so the sums differ in their last bits
    # (measured over the ISA levels of docs/testing.md: scores 1.8e-6, masks 1.1e-6, boxes
    # 4.6e-5 px). Bounds from the accumulation depth (tests/tolerances.py): the box head's
    # 8 x 7 x 7 = 392-term sums through its 3 fc layers; boxes chain the 3 stages' deltas, and
    # a delta of 1 moves a box by its size (<= 128 px) times the stage's std (<= 0.1); masks: the
    # 3 x 3 x 8 = 72-term convolutions of the mask head's 3 layers. A wrong stage, std or
    # averaging moves scores and boxes by >= 1e-3.
    score_tol = reorder_tol(392, scale=1.0, layers=3)
    box_tol = reorder_tol(392, scale=128 * 0.1, layers=3 * 3)
    mask_tol = reorder_tol(72, scale=1.0, layers=3)
    for i, (rb, rs, rl, rm) in enumerate(ref):
        sel = ids == i
        assert torch.equal(labels[sel], rl)
        torch.testing.assert_close(boxes[sel], rb, atol=box_tol, rtol=0)
        torch.testing.assert_close(scores[sel], rs, atol=score_tol, rtol=0)
        torch.testing.assert_close(masks[sel], rm, atol=mask_tol, rtol=0)


def test_empty_proposals_give_empty_detections() -> None:
    head = CascadeRoIHead(2, in_channels=8, fc_out_channels=16, mask_convs=1).eval()
    feats = [torch.randn(1, 8, 64 // s, 64 // s) for s in (4, 8, 16, 32, 64)]
    with torch.no_grad():
        out = head(feats, [torch.zeros(0, 5)], torch.tensor([[64, 64]]), torch.ones(1, 4))
    assert [t.shape[0] for t in out] == [0] * 5
    assert out[3].shape == (0, 28, 28)


# ---- builder and zoo ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["bbox_head"][1].update(reg_class_agnostic=False), r"bbox_head\[1\]"),
        (lambda r: r.update(num_stages=2), "bbox_head must be a dict or a list of 2"),
        (lambda r: r.update(mask_roi_extractor=None), "mask_roi_extractor is missing"),
        (lambda r: r["bbox_head"][2].update(fc_out_channels=512), "differs between cascade"),
        (lambda r: r["mask_head"].update(class_agnostic=True), "class_agnostic"),
        (lambda r: r["bbox_head"][0].update(num_classes=3), "num_classes"),
    ],
)
def test_unsupported_cascade_configs_are_refused(edit, message: str) -> None:
    roi = copy.deepcopy(_model_cfg(ARCHS[0])["roi_head"])
    edit(roi)
    with pytest.raises(ConfigError, match=message):
        build_cascade_roi_head(roi, {}, None)


def test_zoo_entry_and_alias_build_the_fixture_architecture() -> None:
    fixture = _without_dcn(_model_cfg(ARCHS[0]))
    zoo = zoo_model_config("cascade_mask_rcnn_r50_fpn_dconv", 2)
    assert zoo == zoo_model_config("mask_rcnn_r50_fpn_dconv", 2)
    for key in ("dcn", "stage_with_dcn"):
        assert zoo["backbone"][key] == _model_cfg(ARCHS[0])["backbone"][key]
    ours, theirs = build_model(_without_dcn(zoo)), build_model(fixture)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    a, b = ours.roi_head, theirs.roi_head
    assert (a.stds, a.means, a.score_thr, a.iou_threshold, a.max_per_img) == (
        b.stds,
        b.means,
        b.score_thr,
        b.iou_threshold,
        b.max_per_img,
    )


# ---- the whole network (no DCN) with the fixture weights: TorchScript and torch.export --------


@pytest.fixture(scope="module")
def nodcn_model():
    model = build_model(_without_dcn(_model_cfg(ARCHS[0])))
    sd = {k: v for k, v in rebuild_state_dict(DATA / ARCHS[0]).items() if ".conv_offset." not in k}
    model.load_state_dict(sd, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def small_batch():
    img = cv2.imread(str(DATA / "mmdet" / "images" / "china_640x427.jpg"))
    cfg = PreprocessConfig(img_scale=(320, 224))
    return preprocess([img, np.ascontiguousarray(img[:300, :400])], cfg)


def _assert_same(a, b) -> None:
    """The TorchScript / torch.export tier (STYLE.md): both run eager's kernels on the same input
    in one process, so floats differ only where a program fuses or reorders an operation, which
    1e-4 bounds; integers (labels, image ids) are equal."""
    assert torch.equal(a[2], b[2])
    assert torch.equal(a[4], b[4])
    for x, y in ((a[0], b[0]), (a[1], b[1]), (a[3], b[3])):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_torchscript_matches_eager_after_save_and_load(nodcn_model, small_batch) -> None:
    args = (small_batch.images, small_batch.image_sizes, small_batch.scale_factors)
    with torch.inference_mode():
        eager = nodcn_model(*args)
    assert eager[0].shape[0] > 0 and set(eager[4].tolist()) == {0, 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 warns that TorchScript is deprecated
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(nodcn_model), buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
    with torch.inference_mode():
        _assert_same(eager, loaded(*args))


@pytest.mark.slow
def test_torch_export_with_dynamic_height_width(nodcn_model, small_batch) -> None:
    args = (small_batch.images, small_batch.image_sizes, small_batch.scale_factors)
    h = torch.export.Dim("h32", min=2, max=64)
    w = torch.export.Dim("w32", min=2, max=64)
    with torch.no_grad():
        ep = torch.export.export(
            nodcn_model, args, dynamic_shapes=({2: 32 * h, 3: 32 * w}, None, None)
        )
        _assert_same(nodcn_model(*args), ep.module()(*args))
        other = torch.nn.functional.pad(small_batch.images, (0, 64, 0, 32))
        args2 = (other, small_batch.image_sizes, small_batch.scale_factors)
        _assert_same(nodcn_model(*args2), ep.module()(*args2))
