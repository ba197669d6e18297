"""Showing results: tables, exports, comparisons, the users' chain measures and the HTML report. Read-only."""
