"""CSV cells that are safe to open in a spreadsheet (CSV injection, OWASP "CSV Injection").

Excel, LibreOffice and Google Sheets run a cell starting with ``=``, ``+``, ``-`` or ``@`` as a formula, and
a leading tab or carriage return lets one slip past naive checks. Files we hand back to marketers (rejects
downloads, the offline cleaner's rejects file) carry values strangers typed into sign-up forms, so each
such cell gets a leading apostrophe, which spreadsheets display as text and hide.
"""

from __future__ import annotations

__all__ = ["FORMULA_PREFIXES", "safe_cell"]

FORMULA_PREFIXES = frozenset({"=", "+", "-", "@", "\t", "\r"})


def safe_cell(value: str) -> str:
    """``value`` with a leading ``'`` when a spreadsheet would read it as a formula."""
    return f"'{value}" if value[:1] in FORMULA_PREFIXES else value
