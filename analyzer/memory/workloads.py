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
