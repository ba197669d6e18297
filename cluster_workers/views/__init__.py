"""Showing results: tables, exports, comparisons, the application's chain measures and the HTML report. Read-only."""
