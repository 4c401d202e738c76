"""MONAI's ``RetinaNetDetector`` with its ATSS anchor matching reachable without torchvision."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.utils.ATSS_matcher import ATSSMatcher

__all__ = ["ATSSRetinaNetDetector"]


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
