"""Ignite engines and the COCO metric of the detection bundle, as the Model Zoo's ``lung_nodule_ct_detection``
builds them in its ``scripts/``: images and boxes travel as lists (images of different sizes, a different number of
boxes each), the detector computes its own losses in training and runs sliding-window inference in validation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from monai.apps.detection.metrics.coco import COCOMetric
from monai.apps.detection.metrics.matching import matching_batch
from monai.data.box_utils import box_iou
from monai.engines import Evaluator, Trainer
from monai.engines.utils import IterationEvents
from monai.utils import IgniteInfo, min_version, optional_import
from monai.utils.enums import CommonKeys as Keys

Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric")
reinit__is_reduced, _ = optional_import("ignite.metrics.metric", IgniteInfo.OPT_IMPORT_VERSION, min_version, "reinit__is_reduced")

__all__ = ["COCODetectionMetric", "DetectionEvaluator", "DetectionTrainer", "coco_metric_name", "detection_prepare_batch"]

BOX, LABEL, SCORE = "box", "label", "label_scores"


def _flatten(batchdata: Any) -> list[dict]:
    """The items of a batch made with ``no_collation``: a list per image of dicts, or of lists of crops."""
    items: list[dict] = []
    for entry in batchdata:
        items.extend(entry if isinstance(entry, (list, tuple)) else [entry])
    return items


def detection_prepare_batch(
    batchdata: Any, device: torch.device | str | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]] | None]:
    """The images and the targets ``{"box", "label"}`` of a batch, on ``device``; targets None when it has no
    boxes (inference)."""
    items = _flatten(batchdata)
    images = [torch.as_tensor(d[Keys.IMAGE]).to(device=device, non_blocking=non_blocking, **kwargs) for d in items]
    if not all(BOX in d for d in items):
        return images, None
    targets = [
        {
            BOX: torch.as_tensor(d[BOX], dtype=torch.float32).reshape(-1, 6).to(device=device, non_blocking=non_blocking),
            LABEL: torch.as_tensor(d[LABEL], dtype=torch.long).reshape(-1).to(device=device, non_blocking=non_blocking),
        }
        for d in items
    ]
    return images, targets


class DetectionTrainer(Trainer):
    """
    Training of a MONAI ``RetinaNetDetector``: each iteration passes the images and their boxes to the detector,
    which returns its classification and box-regression losses; their sum is minimised.

    ``engine.state.output`` holds ``image``, ``label`` (the targets), ``classification``, ``box_regression`` and
    ``loss`` (the sum). Only ``detector.network`` holds parameters, so it is what the checkpoints save.

    Args:
        device: the training device.
        max_epochs: epochs to run.
        train_data_loader: loader of lists of ``{"image", "box", "label"}`` (``collate_fn=no_collation``).
        detector: the ``RetinaNetDetector`` (matcher, sampler and target keys ``box``/``label`` set).
        optimizer: optimiser of ``detector.network``'s parameters.
        epoch_length: iterations per epoch, default the loader's length.
        prepare_batch: see :py:func:`detection_prepare_batch`.
        train_handlers: ignite handlers to attach.
        amp: mixed precision (CUDA only).
        cls_weight, box_weight: weights of the two losses.
        inferer: kept as ``self.inferer`` for MONAI's workflow properties (``train#inferer``); the detector computes
            its training losses itself, as in the Model Zoo's ``DetectionTrainer``.
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        detector: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        epoch_length: int | None = None,
        prepare_batch: Callable = detection_prepare_batch,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        cls_weight: float = 1.0,
        box_weight: float = 1.0,
        inferer=None,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            prepare_batch=prepare_batch,
            handlers=train_handlers,
            amp=amp,
            decollate=False,
        )
        self.detector = detector
        self.network = detector.network
        self.optimizer = optimizer
        self.cls_weight = float(cls_weight)
        self.box_weight = float(box_weight)
        self.inferer = inferer

    def _iteration(self, engine: DetectionTrainer, batchdata: Any) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        images, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
        if targets is None:
            raise ValueError("the training batch has no 'box' and 'label'; the training datalist needs boxes.")
        engine.state.output = {Keys.IMAGE: images, Keys.LABEL: targets}
        engine.detector.train()
        engine.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=torch.device(engine.state.device).type, enabled=bool(engine.amp)):
            losses = engine.detector(images, targets)
            loss = self.cls_weight * losses[engine.detector.cls_key] + self.box_weight * losses[engine.detector.box_reg_key]
        engine.state.output.update({k: v.detach() for k, v in losses.items()})
        engine.state.output[Keys.LOSS] = loss
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if engine.amp and engine.scaler is not None:
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.state.output[Keys.LOSS] = loss.detach()
        return engine.state.output


class DetectionEvaluator(Evaluator):
    """
    Validation, evaluation or inference of a ``RetinaNetDetector`` on whole volumes: the detector's sliding-window
    inferer (``set_sliding_window_inferer``) runs over each image and its box selector keeps the best boxes.

    ``engine.state.output`` holds ``image``, ``pred`` (one dict ``{"box", "label", "label_scores"}`` per image,
    boxes in image voxel coordinates, ``xyzxyz``) and ``label`` (the targets, None in inference).

    Args:
        device: the device of the network.
        val_data_loader: loader of lists of ``{"image"[, "box", "label"]}`` (``collate_fn=no_collation``).
        detector: the ``RetinaNetDetector``.
        key_val_metric, additional_metrics: ignite metrics on the output, e.g. :py:class:`COCODetectionMetric`.
        val_handlers: ignite handlers to attach.
        amp: mixed precision (CUDA only).
    """

    def __init__(
        self,
        device: torch.device | str,
        val_data_loader: Iterable,
        detector: torch.nn.Module,
        epoch_length: int | None = None,
        prepare_batch: Callable = detection_prepare_batch,
        key_val_metric: dict | None = None,
        additional_metrics: dict | None = None,
        val_handlers: Sequence | None = None,
        amp: bool = False,
    ) -> None:
        super().__init__(
            device=device,
            val_data_loader=val_data_loader,
            epoch_length=epoch_length,
            prepare_batch=prepare_batch,
            key_val_metric=key_val_metric,
            additional_metrics=additional_metrics,
            val_handlers=val_handlers,
            amp=amp,
            decollate=False,
        )
        self.detector = detector
        self.network = detector.network

    def _iteration(self, engine: DetectionEvaluator, batchdata: Any) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        images, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
        engine.detector.eval()
        with torch.no_grad(), torch.autocast(device_type=torch.device(engine.state.device).type, enabled=bool(engine.amp)):
            preds = engine.detector(images, use_inferer=True)
        preds = [{k: v.detach().float() if k != LABEL else v.detach() for k, v in p.items()} for p in preds]
        engine.state.output = {Keys.IMAGE: images, Keys.PRED: preds, Keys.LABEL: targets}
        engine.state.batch = _flatten(batchdata)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


def coco_metric_name(kind: str, iou: float | None = None, max_detection: int = 100) -> str:
    """The key of ``COCOMetric``'s result for ``kind`` ``"AP"`` or ``"AR"`` at one IoU threshold, or ``"mAP"`` /
    ``"mAR"`` over the IoU range 0.1-0.5 (``iou`` None)."""
    if iou is None:
        return f"{kind}_IoU_0.10_0.50_0.05_MaxDet_{max_detection}"
    return f"{kind}_IoU_{iou:.2f}_MaxDet_{max_detection}"


class COCODetectionMetric(Metric):
    """
    One value of MONAI's ``COCOMetric`` over a whole validation epoch, as an ignite metric: average precision at an
    IoU threshold (``AP_IoU_0.10_MaxDet_100``: mAP@0.1, the key metric of the Model Zoo's nodule detector) or the
    recall over the IoU range 0.1-0.5 (``mAR_IoU_0.10_0.50_0.05_MaxDet_100``).

    Predictions and targets are gathered from every process under ``torch.distributed``.

    Args:
        classes: names of the box classes (index ``i`` is ``classes[i]``).
        metric: the key of the ``COCOMetric`` result, see :py:func:`coco_metric_name`.
        iou_list: IoU thresholds of the per-threshold values.
        max_detection: detections per image counted.
        output_transform: the engine output to ``(preds, targets)``.
    """

    def __init__(
        self,
        classes: Sequence[str] = ("blob",),
        metric: str = "AP_IoU_0.10_MaxDet_100",
        iou_list: Sequence[float] = (0.1, 0.5),
        max_detection: int = 100,
        output_transform: Callable = lambda x: (x[Keys.PRED], x[Keys.LABEL]),
        device: torch.device | str = "cpu",
    ) -> None:
        self.coco = COCOMetric(classes=list(classes), iou_list=list(iou_list), max_detection=[int(max_detection)])
        self.metric = metric
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._preds: list[dict] = []
        self._targets: list[dict] = []

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        preds, targets = output
        if targets is None:
            raise ValueError("COCODetectionMetric needs the true boxes; the validation datalist has none.")
        self._preds += [{k: v.detach().cpu().numpy() for k, v in p.items()} for p in preds]
        self._targets += [{k: v.detach().cpu().numpy() for k, v in t.items()} for t in targets]

    def compute(self) -> float:
        preds, targets = self._preds, self._targets
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (preds, targets))
            preds = [p for g in gathered for p in g[0]]
            targets = [t for g in gathered for t in g[1]]
        results = matching_batch(
            iou_fn=box_iou,
            iou_thresholds=self.coco.iou_thresholds,
            pred_boxes=[p[BOX] for p in preds],
            pred_classes=[p[LABEL] for p in preds],
            pred_scores=[p[SCORE] for p in preds],
            gt_boxes=[t[BOX] for t in targets],
            gt_classes=[t[LABEL] for t in targets],
        )
        values = self.coco(results)[0]
        if self.metric not in values:
            raise ValueError(f"metric {self.metric!r} is not a COCOMetric result; choose one of {sorted(values)}.")
        return float(np.nan_to_num(values[self.metric], nan=0.0))
