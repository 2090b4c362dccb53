"""The pinned real-stack venv (default CUDA torch build, torchvision, transformers) (integration)."""
