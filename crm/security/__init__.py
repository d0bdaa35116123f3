"""Encryption column types, blind index, password hashing and token helpers."""
