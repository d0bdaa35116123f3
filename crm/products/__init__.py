"""The product catalogue (as last synced from the ERP)."""
