"""The scan's plumbing, shared by the ELF and source passes and the commands: the result cache
(`cache.py`), the worker pool (`workers.py`), the collector paused per parsed file (`gc_pause.py`),
wheel and archive reading (`archive.py`), importable module names (`modules.py`). The driver that
uses them, `analyzer/scan.py`, sits above the passes and stays out of this folder."""
