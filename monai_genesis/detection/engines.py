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
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import IgniteInfo, ImageMetaKey, min_version, optional_import
from monai.utils.enums import CommonKeys as Keys

Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric")
reinit__is_reduced, _ = optional_import("ignite.metrics.metric", IgniteInfo.OPT_IMPORT_VERSION, min_version, "reinit__is_reduced")

__all__ = [
    "COCODetectionMetric",
    "DetectionEvaluator",
    "DetectionTrainer",
    "coco_metric_name",
    "detection_output",
    "detection_prepare_batch",
]

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


def _detector_network(detector: torch.nn.Module, network: torch.nn.Module | None) -> torch.nn.Module:
    """The network an engine of ``detector`` trains or runs: the detector's own."""
    if network is not None and network is not detector.network:
        raise ValueError(
            "the engine's network must be the detector's (detector.network): build the detector over the same "
            "network, e.g. \"network\": \"@network\" in both."
        )
    return detector.network


class DetectionTrainer(SupervisedTrainer):
    """
    Training of a MONAI ``RetinaNetDetector``: each iteration passes the images and their boxes to the detector,
    which returns its classification and box-regression losses; their weighted sum is minimised.

    A ``SupervisedTrainer`` in its arguments, so that the shared base of the bundles (``configs/base/train.json``)
    builds it as it builds the other bundles' trainers: the detection bundle names it ``train#engine`` with its
    ``detector`` bound (``"_mode_": "callable"``), and the base adds the loader, the network, the optimiser, the
    handlers and the rest. ``engine.state.output`` holds ``image``, ``label`` (the targets), ``classification``,
    ``box_regression`` and ``loss`` (the sum); outputs are never decollated (images and boxes are lists). Only
    ``detector.network`` holds parameters, so it is what the checkpoints save.

    Args:
        device: the training device.
        max_epochs: epochs to run.
        train_data_loader: loader of lists of ``{"image", "box", "label"}`` (``collate_fn=no_collation``).
        detector: the ``RetinaNetDetector`` (matcher, sampler and target keys ``box``/``label`` set).
        optimizer: optimiser of ``detector.network``'s parameters.
        network: ``detector.network`` (the default); another network is an error.
        loss_function: the classification loss the detector was built with, kept as ``self.loss_function``; the
            detector computes both losses itself, as in the Model Zoo's ``DetectionTrainer``.
        prepare_batch: see :py:func:`detection_prepare_batch`.
        cls_weight, box_weight: weights of the two losses.
        kwargs: the other arguments of ``SupervisedTrainer`` (``epoch_length``, ``inferer``, ``train_handlers``,
            ``key_train_metric``, ``metric_cmp_fn``, ``amp``, ...), but ``decollate``.
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        detector: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        network: torch.nn.Module | None = None,
        loss_function: Callable | None = None,
        prepare_batch: Callable = detection_prepare_batch,
        cls_weight: float = 1.0,
        box_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=_detector_network(detector, network),
            optimizer=optimizer,
            loss_function=loss_function,
            prepare_batch=prepare_batch,
            decollate=False,
            **kwargs,
        )
        self.detector = detector
        self.cls_weight = float(cls_weight)
        self.box_weight = float(box_weight)

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
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss = engine.cls_weight * losses[engine.detector.cls_key] + engine.box_weight * losses[engine.detector.box_reg_key]
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
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


class DetectionEvaluator(SupervisedEvaluator):
    """
    Validation, evaluation or inference of a ``RetinaNetDetector`` on whole volumes: the detector's sliding-window
    inferer (``set_sliding_window_inferer``) runs over each image and its box selector keeps the best boxes.

    A ``SupervisedEvaluator`` in its arguments, built by the shared base as :py:class:`DetectionTrainer` is
    (``validate#engine``). ``engine.state.output`` holds ``image``, ``pred`` (one dict ``{"box", "label",
    "label_scores"}`` per image, boxes in image voxel coordinates, ``xyzxyz``) and ``label`` (the targets, None in
    inference); outputs are never decollated.

    Args:
        device: the device of the network.
        val_data_loader: loader of lists of ``{"image"[, "box", "label"]}`` (``collate_fn=no_collation``).
        detector: the ``RetinaNetDetector``.
        network: ``detector.network`` (the default); another network is an error.
        prepare_batch: see :py:func:`detection_prepare_batch`.
        kwargs: the other arguments of ``SupervisedEvaluator`` (``key_val_metric``, ``additional_metrics``,
            ``val_handlers``, ``inferer`` (kept; the detector infers with its own), ``amp``, ...), but ``decollate``.
    """

    def __init__(
        self,
        device: torch.device | str,
        val_data_loader: Iterable,
        detector: torch.nn.Module,
        network: torch.nn.Module | None = None,
        prepare_batch: Callable = detection_prepare_batch,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            device=device,
            val_data_loader=val_data_loader,
            network=_detector_network(detector, network),
            prepare_batch=prepare_batch,
            decollate=False,
            **kwargs,
        )
        self.detector = detector

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


def detection_output(output: dict) -> tuple[list, list | None, list]:
    """The predictions, the targets and the source file of each image (None when unknown) of a
    :py:class:`DetectionEvaluator`'s output, for :py:class:`COCODetectionMetric`."""
    sources = [getattr(image, "meta", {}).get(ImageMetaKey.FILENAME_OR_OBJ) for image in output[Keys.IMAGE]]
    return output[Keys.PRED], output[Keys.LABEL], [s if isinstance(s, str) else None for s in sources]


def _once_per_source(preds: list, targets: list, sources: list) -> tuple[list, list]:
    """The predictions and targets with every image whose source was seen before left out."""
    seen: set[str] = set()
    kept = []
    for i, source in enumerate(sources):
        if source is None or source not in seen:
            kept.append(i)
        if source is not None:
            seen.add(source)
    return [preds[i] for i in kept], [targets[i] for i in kept]


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

    Predictions and targets are gathered from every process under ``torch.distributed``. There an image seen by
    two processes counts once: ``DistributedSampler(even_divisible=True)`` (``configs/multi_gpu_train.json``) repeats
    a few images so that every process has as many; images are told apart by their source file.

    Args:
        classes: names of the box classes (index ``i`` is ``classes[i]``).
        metric: the key of the ``COCOMetric`` result, see :py:func:`coco_metric_name`.
        iou_list: IoU thresholds of the per-threshold values.
        max_detection: detections per image counted.
        output_transform: the engine output to ``(preds, targets)`` or ``(preds, targets, sources)``, a source per
            image (its file, None when unknown); default :py:func:`detection_output`.
    """

    def __init__(
        self,
        classes: Sequence[str] = ("blob",),
        metric: str = "AP_IoU_0.10_MaxDet_100",
        iou_list: Sequence[float] = (0.1, 0.5),
        max_detection: int = 100,
        output_transform: Callable | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        output_transform = detection_output if output_transform is None else output_transform
        self.coco = COCOMetric(classes=list(classes), iou_list=list(iou_list), max_detection=[int(max_detection)])
        self.metric = metric
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._preds: list[dict] = []
        self._targets: list[dict] = []
        self._sources: list[str | None] = []

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        preds, targets = output[0], output[1]
        if targets is None:
            raise ValueError("COCODetectionMetric needs the true boxes; the validation datalist has none.")
        self._preds += [{k: v.detach().cpu().numpy() for k, v in p.items()} for p in preds]
        self._targets += [{k: v.detach().cpu().numpy() for k, v in t.items()} for t in targets]
        self._sources += list(output[2]) if len(output) > 2 else [None] * len(preds)

    def compute(self) -> float:
        preds, targets = self._preds, self._targets
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (preds, targets, self._sources))
            preds, targets = _once_per_source(
                [p for g in gathered for p in g[0]], [t for g in gathered for t in g[1]], [s for g in gathered for s in g[2]]
            )
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
