"""interpkit."""
