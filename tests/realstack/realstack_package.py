"""A torchvision detector as a torch.package model for `interpkit run` (interned by the test).

It answers one image with plain lists, so answers pickle without torch on the host side and
compare exactly between interpreters.
"""
from __future__ import annotations

import torch
import torchvision


class Detector(torch.nn.Module):
    def __init__(self, name: str, options: dict) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = getattr(torchvision.models.detection, name)(
            weights=None, weights_backbone=None, **options).eval()

    def forward(self, image):
        with torch.inference_mode():
            (found,) = self.model([image])
        return {key: value.tolist() for key, value in sorted(found.items())}
