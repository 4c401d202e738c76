"""3D object detection fine-tuned from a pretrained backbone: MONAI's RetinaNet over CSPR's 3D ResNet-18, box
datalists (boxes given, or derived from label volumes), their checks, blob phantoms with known boxes, engines, the
COCO metric and the bundle's handlers."""

from monai_genesis.detection.boxes import (
    BOX_MODES,
    boxes_from_label,
    check_box_mode,
    check_boxes,
    connected_components,
    voxel_to_world_boxes,
    world_to_voxel_boxes,
)
from monai_genesis.detection.datalist import detection_datalist, image_geometry, inference_datalist, read_box_datalist
from monai_genesis.detection.detector import ATSSRetinaNetDetector, retinanet_detector
from monai_genesis.detection.engines import (
    COCODetectionMetric,
    DetectionEvaluator,
    DetectionTrainer,
    coco_metric_name,
    detection_output,
    detection_prepare_batch,
)
from monai_genesis.detection.handlers import BoxJSONWriter, BoxSlicePNGSaver, draw_boxes_on_slice
from monai_genesis.detection.networks import BACKBONE_PREFIX, ResNetFPNFeatureExtractor, resnet18_retinanet, size_divisible
from monai_genesis.detection.phantoms import blob_phantom, write_blob_phantoms
from monai_genesis.detection.pretrained import backbone_prefix_map, check_backbone_checkpoint

__all__ = [
    "ATSSRetinaNetDetector",
    "BACKBONE_PREFIX",
    "BOX_MODES",
    "BoxJSONWriter",
    "BoxSlicePNGSaver",
    "COCODetectionMetric",
    "DetectionEvaluator",
    "DetectionTrainer",
    "ResNetFPNFeatureExtractor",
    "backbone_prefix_map",
    "blob_phantom",
    "boxes_from_label",
    "check_backbone_checkpoint",
    "check_box_mode",
    "check_boxes",
    "coco_metric_name",
    "connected_components",
    "detection_datalist",
    "detection_output",
    "detection_prepare_batch",
    "draw_boxes_on_slice",
    "image_geometry",
    "inference_datalist",
    "read_box_datalist",
    "resnet18_retinanet",
    "retinanet_detector",
    "size_divisible",
    "voxel_to_world_boxes",
    "world_to_voxel_boxes",
    "write_blob_phantoms",
]
