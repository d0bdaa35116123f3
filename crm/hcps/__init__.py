"""HCP and HCO master data, territories and their effective-dated assignments."""
