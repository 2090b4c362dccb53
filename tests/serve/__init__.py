"""interpkit run and the bench scripts on real torch.package archives (integration)."""
