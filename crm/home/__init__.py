"""The start page of each role: its own work first."""
