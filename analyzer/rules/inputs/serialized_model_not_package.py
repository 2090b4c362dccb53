"""IK902: a `.pt` file that is a TorchScript module or a `torch.save` file, not a torch.package archive.

## What it does
Reports, as information, a `.pt` file that PyTorch wrote with `torch.jit.save` (TorchScript)
or `torch.save` (a `state_dict` or other pickled objects) rather than with
`torch.package.PackageExporter`. Such files are common in environments: torch itself ships
`torch/bin/test_interpreter_async.pt`.

## Why is this bad?
It is not bad: it is a different kind of file. A TorchScript module carries compiled
TorchScript code that runs in TorchScript's own interpreter, and a `torch.save` file carries
tensors and pickled objects, not Python modules; neither holds the Python source that the
IK4xx/IK5xx rules read, so there is nothing to scan inside. Serving such a file from many
interpreters needs the Python code that loads it, which is where the scan should look.

## Example
```python
torch.jit.save(torch.jit.script(model), "model.pt")   # TorchScript
torch.save(model.state_dict(), "weights.pt")          # torch.save
```

## Use instead
```python
from torch.package import PackageExporter

with PackageExporter("model.pt") as exporter:
    exporter.intern("my_model.**")
    exporter.extern("torch.**")
    exporter.save_pickle("model", "model.pkl", model)
```
or scan the Python code that loads the file.

## References
- https://pytorch.org/docs/stable/package.html
- https://pytorch.org/docs/stable/jit.html
"""
from __future__ import annotations

from pathlib import Path

from interpkit.core.findings import Finding, Severity
from interpkit.analyzer.registry import Rule

RULE = Rule(
    code="IK902",
    name="serialized-model-not-package",
    title="a .pt file that is TorchScript or torch.save data, not a torch.package archive",
    severity=Severity.INFO,
    backends=frozenset(),             # data or TorchScript: no runtime is affected
    verdicts={},
    fix="scan the Python code that loads it, or export the model with torch.package",
    doc=__doc__,
)


def check(path: Path, file_format: str | None) -> list[Finding]:
    """One finding naming what the file is (`file_format`, from analyzer.plumbing.archive), or nothing."""
    if file_format is None:
        return []
    return [RULE.finding(Path(path), f"is a {file_format}, not a torch.package archive: no Python source inside to scan")]
