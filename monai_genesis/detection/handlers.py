"""Handlers of the detection bundle: a picture of predicted and true boxes on a slice, and the predicted boxes
written as JSON in the world coordinates of each image."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import
from PIL import Image, ImageDraw

from monai_genesis.detection.boxes import check_box_mode, voxel_to_world_boxes

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["BoxJSONWriter", "BoxSlicePNGSaver", "draw_boxes_on_slice"]

logger = logging.getLogger(__name__)

TRUE_COLOUR, PRED_COLOUR = (0, 220, 0), (255, 40, 40)


def draw_boxes_on_slice(
    image: np.ndarray | torch.Tensor,
    true_boxes: np.ndarray | None,
    pred_boxes: np.ndarray | None,
    pred_scores: np.ndarray | None = None,
    z: int | None = None,
    scale: int = 4,
    max_pred: int = 3,
) -> tuple[Image.Image, int]:
    """
    The axial slice ``z`` of a volume (x to the right, y upwards) with the true boxes that cross it in green and the
    ``max_pred`` best predicted boxes that cross it in red, each with its score.

    Args:
        image: ``(C, X, Y, Z)`` or ``(X, Y, Z)`` volume; shown between its 1st and 99th percentiles.
        true_boxes, pred_boxes: ``(N, 6)`` voxel boxes in corner mode (``xyzxyz``), or None.
        pred_scores: scores of ``pred_boxes`` (sorted best first when given).
        z: the slice; None takes the centre of the first true box, else of the best predicted box, else the middle.
        scale: pixels per voxel in the picture.
        max_pred: predicted boxes drawn at most.

    Returns:
        the RGB picture and the slice drawn.
    """
    volume = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    volume = volume[0] if volume.ndim == 4 else volume
    true_boxes = np.zeros((0, 6)) if true_boxes is None else np.asarray(true_boxes, dtype=np.float64).reshape(-1, 6)
    pred_boxes = np.zeros((0, 6)) if pred_boxes is None else np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 6)
    scores = np.ones(len(pred_boxes)) if pred_scores is None else np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores)
    pred_boxes, scores = pred_boxes[order], scores[order]
    if z is None:
        ref = true_boxes[0] if len(true_boxes) else pred_boxes[0] if len(pred_boxes) else None
        z = int((ref[2] + ref[5]) / 2) if ref is not None else volume.shape[2] // 2
    z = int(np.clip(z, 0, volume.shape[2] - 1))
    plane = volume[:, :, z]
    lo, hi = np.percentile(plane, (1, 99))
    grey = (np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    # rows of the picture: y from the top (largest y) down, columns: x
    picture = Image.fromarray(grey.T[::-1]).convert("RGB").resize((grey.shape[0] * scale, grey.shape[1] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    height = grey.shape[1]

    def rect(box, colour, text=None):
        if not box[2] <= z + 0.5 < box[5]:
            return False
        x0, x1 = box[0] * scale, box[3] * scale
        y0, y1 = (height - box[4]) * scale, (height - box[1]) * scale
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=2)
        if text:
            draw.text((x0 + 2, y0 + 2), text, fill=colour)
        return True

    for box in true_boxes:
        rect(box, TRUE_COLOUR)
    drawn = 0
    for box, score in zip(pred_boxes, scores):
        if drawn >= max_pred:
            break
        drawn += rect(box, PRED_COLOUR, f"{score:.2f}")
    draw.text((4, 4), f"z={z}  true: green  predicted: red", fill=(255, 255, 0))
    return picture, z


class BoxSlicePNGSaver:
    """
    After each run of the evaluator, write a PNG of the first validation image's slice through its first true box,
    with the true (green) and best predicted (red, with scores) boxes that cross it.

    Args:
        output_dir: folder of the picture.
        filename: its name (overwritten at every validation, so it shows the latest network).
        max_pred: predicted boxes drawn at most.
    """

    def __init__(self, output_dir: str, filename: str = "boxes.png", max_pred: int = 3) -> None:
        self.output_dir = output_dir
        self.filename = filename
        self.max_pred = int(max_pred)
        self._first: dict[str, Any] | None = None

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._keep_first)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, engine) -> None:
        self._first = None

    def _keep_first(self, engine) -> None:
        if self._first is None:
            out = engine.state.output
            targets = out.get("label")
            self._first = {
                "image": out["image"][0].detach().cpu(),
                "true": None if targets is None else targets[0]["box"].detach().cpu().numpy(),
                "pred": out["pred"][0]["box"].detach().cpu().numpy(),
                "scores": out["pred"][0]["label_scores"].detach().cpu().numpy(),
            }

    def __call__(self, engine) -> None:
        if self._first is None:
            return
        picture, _ = draw_boxes_on_slice(
            self._first["image"], self._first["true"], self._first["pred"], self._first["scores"], max_pred=self.max_pred
        )
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, self.filename)
        picture.save(path)
        logger.info(f"wrote {path}")


class BoxJSONWriter:
    """
    Collect the predicted boxes of every image and write them, at the end of the run, as JSON in the world
    coordinates (mm, RAS) of each image: ``{"box_mode", "coordinates", "test": [{"image", "box", "label",
    "label_scores"}]}``, boxes sorted by score, in the declared ``box_mode`` (a datalist in the same mode reads them
    back).

    Args:
        output_dir: folder of the file.
        filename: its name.
        box_mode: mode of the boxes written (``"cccwhd"``, ``"xyzwhd"`` or ``"xyzxyz"``).
        score_threshold: boxes of a lower score are left out.
    """

    def __init__(self, output_dir: str, filename: str = "predictions.json", box_mode: str = "cccwhd", score_threshold: float = 0.0) -> None:
        self.output_dir = output_dir
        self.filename = filename
        self.box_mode = check_box_mode(box_mode)
        self.score_threshold = float(score_threshold)
        self.results: list[dict] = []

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, engine) -> None:
        self.results = []

    def _collect(self, engine) -> None:
        for item, pred in zip(engine.state.batch, engine.state.output["pred"]):
            image = item["image"]
            affine = np.asarray(image.affine if hasattr(image, "affine") else np.eye(4), dtype=np.float64)
            scores = pred["label_scores"].detach().cpu().numpy()
            keep = np.argsort(-scores)
            keep = keep[scores[keep] >= self.score_threshold]
            boxes = pred["box"].detach().cpu().numpy()[keep]
            world = voxel_to_world_boxes(boxes, affine, self.box_mode) if len(boxes) else np.zeros((0, 6))
            source = image.meta.get("filename_or_obj", "") if hasattr(image, "meta") else ""
            self.results.append({
                "image": str(source),
                "box": np.round(world, 3).tolist(),
                "label": pred["label"].detach().cpu().numpy()[keep].astype(int).tolist(),
                "label_scores": np.round(scores[keep], 5).tolist(),
            })

    def __call__(self, engine) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, self.filename)
        with open(path, "w") as f:
            json.dump({"box_mode": self.box_mode, "coordinates": "world (mm, RAS, the image's affine)", "test": self.results}, f, indent=1)
        logger.info(f"wrote the boxes of {len(self.results)} image(s) to {path}")
