"""IK4xx: model-source rules (libcst visitors) for hazards that break N interpreters in one process."""
