"""What each extra interpreter costs in memory: a static estimate from ELF segments, and smaps measurements."""
