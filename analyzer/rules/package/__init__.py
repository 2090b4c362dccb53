"""IK5xx: model-source rules (libcst visitors) for what torch.package cannot see or package."""
