"""MONAI's ``RetinaNetDetector`` with its ATSS anchor matching reachable without torchvision."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.utils.ATSS_matcher import ATSSMatcher

__all__ = ["ATSSRetinaNetDetector", "retinanet_detector"]


class ATSSRetinaNetDetector(RetinaNetDetector):
    """
    ``monai.apps.detection.networks.retinanet_detector.RetinaNetDetector`` that matches anchors to boxes with MONAI's
    ATSS matcher (``set_atss_matcher``, as the Model Zoo's ``lung_nodule_ct_detection`` does).

    MONAI's ``compute_anchor_matched_idxs`` first asks whether the matcher is torchvision's ``Matcher``, which
    raises ``OptionalImportError`` where torchvision is not installed (installing it would replace this project's
    torch); this override goes straight to the ATSS matcher. Everything else (losses, the hard negative sampler,
    box selection, sliding-window inference) is MONAI's. Arguments as ``RetinaNetDetector``.
    """

    def compute_anchor_matched_idxs(
        self, anchors: list[torch.Tensor], targets: list[dict[str, torch.Tensor]], num_anchor_locs_per_level: Sequence[int]
    ) -> list[torch.Tensor]:
        """The index of the box each anchor is matched to, -1 for none; as ``RetinaNetDetector``'s, ATSS only."""
        if not isinstance(self.proposal_matcher, ATSSMatcher):
            raise ValueError(
                f"{type(self).__name__} matches anchors with MONAI's ATSS matcher only, got "
                f"{type(self.proposal_matcher).__name__}; call detector.set_atss_matcher(num_candidates=4, "
                "center_in_gt=False) before training."
            )
        matched_idxs = []
        for anchors_per_image, targets_per_image in zip(anchors, targets):
            boxes = targets_per_image[self.target_box_key]
            if boxes.numel() == 0:
                matched_idxs.append(torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64, device=anchors_per_image.device))
                continue
            _, matched = self.proposal_matcher(
                boxes.to(anchors_per_image.device), anchors_per_image, num_anchor_locs_per_level, self.num_anchors_per_loc
            )
            if torch.max(matched) < 0:
                warnings.warn(
                    f"no anchor is matched with the boxes {boxes.tolist()}: adjust the anchor shapes "
                    "(base_anchor_shapes) to the sizes of the boxes."
                )
            matched_idxs.append(matched)
        return matched_idxs


def retinanet_detector(
    network: torch.nn.Module,
    anchor_generator,
    num_classes: int,
    returned_layers: Sequence[int] = (1, 2, 3, 4),
    extra_level: bool = False,
    cls_loss: torch.nn.Module | None = None,
    roi_size: Sequence[int] = (64, 64, 64),
    device: torch.device | str | None = None,
    score_thresh: float = 0.02,
    nms_thresh: float = 0.22,
    detections_per_img: int = 100,
) -> ATSSRetinaNetDetector:
    """
    The detector of the ``finetune_detection`` bundle, set up as the Model Zoo's ``lung_nodule_ct_detection``:
    ATSS matching (4 candidates per level), hard negative sampling (64 anchors per image, 30% positive), the targets
    under ``box`` and ``label``, box selection (``score_thresh``, NMS at ``nms_thresh``, ``detections_per_img``) and
    sliding-window inference over ``roi_size`` windows with overlap 0.25.

    Args:
        network: the ``RetinaNet`` (possibly wrapped in DistributedDataParallel, hence the explicit attributes).
        anchor_generator: MONAI's ``AnchorGeneratorWithAnchorShape``.
        num_classes: box classes.
        returned_layers, extra_level: the pyramid of the network, for the input divisibility.
        cls_loss: classification loss; None keeps MONAI's ``BCEWithLogitsLoss``.
        roi_size: sliding-window size of inference.
        device: where the windows' outputs are gathered; None: the input's device.
    """
    from monai_genesis.detection.networks import size_divisible

    detector = ATSSRetinaNetDetector(
        network,
        anchor_generator,
        spatial_dims=3,
        num_classes=int(num_classes),
        size_divisible=size_divisible(returned_layers, extra_level),
    )
    if cls_loss is not None:
        detector.set_cls_loss(cls_loss)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_hard_negative_sampler(batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16)
    detector.set_target_keys(box_key="box", label_key="label")
    detector.set_box_selector_parameters(
        score_thresh=score_thresh, topk_candidates_per_level=1000, nms_thresh=nms_thresh, detections_per_img=detections_per_img
    )
    detector.set_sliding_window_inferer(roi_size=list(roi_size), overlap=0.25, sw_batch_size=1, mode="constant", device=device)
    return detector
