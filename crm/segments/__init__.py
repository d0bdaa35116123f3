"""Segments: saved HCP filters (profession, specialty, territory, tags, tier) that campaigns, engagement
plans and insights share (issue 12 item 1)."""
