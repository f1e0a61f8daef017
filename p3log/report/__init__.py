"""`p3log report`: the auditor's report as one self-contained HTML file (docs/report.md).

`model.build_report` gathers what the report says (chain status, transactions with
their timelines, findings, redaction); `html.render_html` draws it, and
`html.write_html` writes it to a file.
"""

from p3log.report.html import CONTENT_SECURITY_POLICY, render_html, write_html
from p3log.report.model import Report, Selection, build_report, default_checkpoint_path

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "Report",
    "Selection",
    "build_report",
    "default_checkpoint_path",
    "render_html",
    "write_html",
]
