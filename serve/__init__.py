"""interpkit.serve: `interpkit run`, a torch.package archive served by N interpreters (`server.py`),
the code each interpreter runs (`worker.py`), its weights mapped from the file (`weights.py`)."""
