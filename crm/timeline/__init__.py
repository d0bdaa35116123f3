"""The interaction spine: one timeline per HCP, the feed across HCPs, redaction on the way out."""
