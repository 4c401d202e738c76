"""The detection engines as the shared base builds them, and the COCO metric counting each image once across
processes."""

import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.data import MetaTensor
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.inferers import SimpleInferer

from monai_genesis.detection import (
    COCODetectionMetric,
    DetectionEvaluator,
    DetectionTrainer,
    detection_output,
    resnet18_retinanet,
    retinanet_detector,
)
from monai_genesis.detection.engines import _once_per_source


def _detector():
    torch.manual_seed(0)
    network = resnet18_retinanet(num_classes=1, num_anchors=3, returned_layers=[1, 2, 3], fpn_channels=16, extra_level=False)
    anchors = AnchorGeneratorWithAnchorShape(feature_map_scales=[1, 2, 4],
                                             base_anchor_shapes=[[8, 8, 8], [12, 12, 12], [16, 16, 16]])
    return retinanet_detector(network, anchors, num_classes=1, returned_layers=[1, 2, 3], roi_size=(32, 32, 32))


def _item(seed, source="scan.nii.gz"):
    image = MetaTensor(torch.rand(1, 32, 32, 32, generator=torch.Generator().manual_seed(seed)),
                       meta={"filename_or_obj": source})
    return {"image": image, "box": torch.tensor([[4.0, 4, 4, 20, 20, 20]]), "label": torch.tensor([0])}


def test_engines_take_the_base_arguments_and_keep_their_outputs_whole():
    detector = _detector()
    optimizer = torch.optim.Adam(detector.network.parameters(), lr=1e-3)
    # the arguments configs/base/train.json gives every trainer, the detector bound by the recipe
    trainer = DetectionTrainer(
        detector=detector, max_epochs=1, device="cpu", train_data_loader=[[_item(0), _item(1)]],
        network=detector.network, loss_function=torch.nn.BCEWithLogitsLoss(), optimizer=optimizer,
        inferer=SimpleInferer(), key_train_metric=None, train_handlers=[], amp=False,
    )
    assert isinstance(trainer, SupervisedTrainer) and trainer.network is detector.network
    before = [p.detach().clone() for p in detector.network.parameters()]
    trainer.run()
    output = trainer.state.output
    assert isinstance(output, dict) and len(output["image"]) == 2  # not decollated
    assert set(output) >= {"classification", "box_regression", "loss"} and torch.isfinite(output["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, detector.network.parameters()))

    metric = COCODetectionMetric(classes=["blob"])
    evaluator = DetectionEvaluator(device="cpu", val_data_loader=[[_item(2, "a.nii.gz")]], detector=detector,
                                   network=detector.network, key_val_metric={"val_map": metric})
    assert isinstance(evaluator, SupervisedEvaluator)
    evaluator.run()
    assert 0.0 <= evaluator.state.metrics["val_map"] <= 1.0
    assert detection_output(evaluator.state.output)[2] == ["a.nii.gz"]
    with pytest.raises(ValueError, match="must be the detector's"):
        DetectionEvaluator(device="cpu", val_data_loader=[], detector=detector, network=torch.nn.Linear(1, 1))


def test_images_repeated_across_processes_count_once():
    preds, targets = ["p0", "p1", "p2", "p0 again", "p3"], ["t0", "t1", "t2", "t0 again", "t3"]
    kept = _once_per_source(preds, targets, ["a", "b", "c", "a", None])
    assert kept == (["p0", "p1", "p2", "p3"], ["t0", "t1", "t2", "t3"])


def _box(*box):
    return {"box": torch.tensor([box], dtype=torch.float32), "label": torch.tensor([0])}


def _pred(score, *box):
    return {"box": torch.tensor([box], dtype=torch.float32), "label": torch.tensor([0]),
            "label_scores": torch.tensor([score])}


# three validation images: one found, one missed, one found with a low score; the second process sees the first
# image again, as DistributedSampler(even_divisible=True) pads two processes' shares of three images
IMAGES = [
    ("a.nii.gz", _pred(0.9, 0, 0, 0, 10, 10, 10), _box(0, 0, 0, 10, 10, 10)),
    ("b.nii.gz", _pred(0.8, 20, 20, 20, 30, 30, 30), _box(0, 0, 0, 10, 10, 10)),
    ("c.nii.gz", _pred(0.1, 0, 0, 0, 10, 10, 10), _box(0, 0, 0, 10, 10, 10)),
]
SHARES = [[0, 2], [1, 0]]


def _rank(rank, port, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    metric = COCODetectionMetric(classes=["blob"], metric="AP_IoU_0.10_MaxDet_100")
    metric.reset()
    for i in SHARES[rank]:
        source, pred, target = IMAGES[i]
        image = MetaTensor(torch.zeros(1, 4, 4, 4), meta={"filename_or_obj": source})
        metric.update(detection_output({"image": [image], "pred": [pred], "label": [target]}))
    value = metric.compute()
    dist.destroy_process_group()
    np.save(os.path.join(out, f"rank{rank}.npy"), np.array(value))


@pytest.mark.slow
def test_distributed_metric_counts_a_padded_image_once(tmp_path):
    single = COCODetectionMetric(classes=["blob"], metric="AP_IoU_0.10_MaxDet_100")
    single.reset()
    for source, pred, target in IMAGES:
        single.update(([pred], [target], [source]))
    expected = single.compute()
    repeated = COCODetectionMetric(classes=["blob"], metric="AP_IoU_0.10_MaxDet_100")
    repeated.reset()
    for i in SHARES[0] + SHARES[1]:
        repeated.update(([IMAGES[i][1]], [IMAGES[i][2]]))
    assert repeated.compute() != pytest.approx(expected)  # counted twice, the found image would weigh more
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    values = [float(np.load(tmp_path / f"rank{r}.npy")) for r in (0, 1)]
    assert values == [pytest.approx(expected)] * 2
