"""Insights: the KPI definitions (``kpis``, the one registry) and the pages that show them."""
