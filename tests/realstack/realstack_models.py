"""Models of the real-model tier, built from random weights (seeded), run on small inputs.

Imported inside namespaced interpreters (and plain processes) of the real-stack venv; every
function returns plain lists so the results pickle and compare exactly. Nothing downloads:
weights=None, weights_backbone=None, transformers models from a config.
"""
from __future__ import annotations

SEED = 0
IMAGE_SIZE = 160        # small: the tier must stay a few minutes on 2 cores

# torchvision detection models that run torchvision's C++ ops (nms, roi_align), with the
# keyword arguments that keep them small and make them return detections from random weights
# (box_score_thresh=0: every box is kept up to the per-image cap, so outputs are never empty).
DETECTORS = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": {"box_score_thresh": 0.0, "box_detections_per_img": 8,
                                              "rpn_post_nms_top_n_test": 50},
    "keypointrcnn_resnet50_fpn": {"box_score_thresh": 0.0, "box_detections_per_img": 3,
                                  "rpn_post_nms_top_n_test": 30, "min_size": IMAGE_SIZE,
                                  "max_size": IMAGE_SIZE},
}
MODELS = (*DETECTORS, "gpt2_tiny")


def _image():
    import torch

    generator = torch.Generator().manual_seed(SEED)
    return torch.rand(3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)


def detector(name: str) -> dict:
    """Boxes, scores, labels (and keypoints where the model has them) of one image."""
    import torch
    import torchvision

    torch.manual_seed(SEED)
    model = getattr(torchvision.models.detection, name)(
        weights=None, weights_backbone=None, **DETECTORS[name]).eval()
    with torch.inference_mode():
        (found,) = model([_image()])
    return {key: value.tolist() for key, value in sorted(found.items())}


def gpt2_tiny() -> dict:
    """Last-position logits and the argmax tokens of a 2-layer GPT-2 from a config."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=512, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(SEED))
    with torch.inference_mode():
        logits = model(input_ids=ids).logits
    return {"last_logits": logits[0, -1].tolist(), "argmax": logits[0].argmax(-1).tolist()}


def run(name: str) -> dict:
    return gpt2_tiny() if name == "gpt2_tiny" else detector(name)


def run_all() -> dict:
    return {name: run(name) for name in MODELS}
