"""Whether a report's packaging-plan export check failed: the table's summary and the exit status ask here."""
from __future__ import annotations

from interpkit.core.findings import Report


def export_check_failed(report: Report) -> bool:
    """The packaging plan's real export ran and did not export, or did not import back."""
    check = (report.extras.get("packaging_plan") or {}).get("export_check") or {}
    return bool(check.get("ran")) and not (check.get("ok") and check.get("loads"))
