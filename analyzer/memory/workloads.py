"""Ready-made calls for `interpkit memory --call`: small model forward passes, importable in any interpreter."""
from __future__ import annotations


def torch_mlp_forward() -> float:
    """Build a small MLP (3 × Linear 512, ~0.8 M parameters) and run one forward pass on a batch of 32.

    Seeded, so every interpreter computes the same number; returns the output's sum.
    """
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )
    with torch.no_grad():
        return float(model(torch.randn(32, 512)).sum())


def transformers_gpt2_forward() -> float:
    """Build a GPT-2 from a config (4 layers, width 256: ~4.5 M parameters, no download) and run
    one forward pass over 32 tokens. Seeded; returns the logits' sum. Needs transformers."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_head=4, n_embd=256, vocab_size=8192, n_positions=128)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return float(model(input_ids=ids).logits.sum())


def torchvision_detector_forward() -> int:
    """Build torchvision's Faster R-CNN (MobileNet v3, 320 px; random weights, no download) and
    detect on one seeded 160 x 160 image. Returns the number of boxes. Needs torchvision."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, box_detections_per_img=8).eval()
    image = torch.rand(3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return len(model([image])[0]["boxes"])
