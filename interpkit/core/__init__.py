"""The bottom layer: findings, verdicts and errors. Imports nothing else of interpkit."""
