"""A small deterministic torch model, imported inside namespaced interpreters by the tests."""
from __future__ import annotations


def forward(batch: int = 4, seed: int = 0) -> list[list[float]]:
    """Build a seeded MLP + conv model and run one forward pass on a seeded input."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(3, 8, kernel_size=3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 16, 32), torch.nn.Tanh(),
        torch.nn.Linear(32, 5),
    ).eval()
    inputs = torch.randn(batch, 3, 16)
    with torch.no_grad():
        return model(inputs).tolist()
