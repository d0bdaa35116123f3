"""Planned visits: the field calendar (issue 14 item 5)."""
