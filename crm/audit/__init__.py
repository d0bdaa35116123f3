"""The hash-chained audit trail of every write."""
