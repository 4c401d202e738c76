"""Post-processing of classification outputs: probabilities and discrete predictions for ``num_classes`` outputs.

One output is a binary task (sigmoid, threshold 0.5); several are classes (softmax, argmax, one-hot), as
``monai_genesis.losses.classification_loss`` trains them.
"""

from __future__ import annotations

from monai.transforms import Activationsd, AsDiscreted, Compose, CopyItemsd

__all__ = ["class_postprocessing", "class_probabilities"]


def _check(num_classes) -> int:
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
    return int(num_classes)


def class_probabilities(num_classes: int, keys: str = "pred") -> Activationsd:
    """Turn the logits under ``keys`` into probabilities: sigmoid for one output, softmax for several.

    Args:
        num_classes: number of network outputs.
        keys: keys of the logits.
    """
    binary = _check(num_classes) == 1
    return Activationsd(keys=keys, sigmoid=binary, softmax=not binary)


def class_postprocessing(num_classes: int, pred_key: str = "pred", prob_key: str = "prob") -> Compose:
    """Probabilities under ``prob_key`` (for AUC) and discrete predictions under ``pred_key`` (for accuracy).

    Args:
        num_classes: number of network outputs.
        pred_key: key of the logits, replaced by the discrete prediction (thresholded, or one-hot of the argmax).
        prob_key: key the probabilities are copied to.
    """
    n = _check(num_classes)
    discrete = (
        AsDiscreted(keys=pred_key, threshold=0.5)
        if n == 1
        else AsDiscreted(keys=pred_key, argmax=True, to_onehot=n)
    )
    return Compose([class_probabilities(n, pred_key), CopyItemsd(keys=pred_key, names=prob_key), discrete])
