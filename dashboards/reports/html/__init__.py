"""HTML rendering: one self-contained file per report (charts are data: URIs, the
style sheet, report.css, is inline), readable on a phone (tables scroll inside their
box, the page never scrolls sideways), printable to PDF.

`markup` builds the page and its pieces, `sections` holds what both reports show,
`shift` and `operations` are the reports. Everything from data or config is escaped;
only strings already built as `Html` go out as markup.
"""

from __future__ import annotations

from dashboards.reports.html.markup import Html, esc, table
from dashboards.reports.html.operations import per_10_min, render_operations
from dashboards.reports.html.shift import render_shift

__all__ = ["Html", "esc", "per_10_min", "render_operations", "render_shift", "table"]
