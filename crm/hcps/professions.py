"""The professions an HCP can have (a plain module: the NPPES reader process checks the taxonomy
table against it without loading the models)."""

PROFESSIONS = ("gp", "specialist", "pharmacist", "nurse", "other")
