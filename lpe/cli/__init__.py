"""Command-line flags shared by the entry points (stages, reports, tools)."""
