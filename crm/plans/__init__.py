"""Engagement plans in the shape of a multichannel cycle plan, and their attainment (issue 12 item 2)."""
