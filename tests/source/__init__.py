"""Source rules and the model-source scan."""
