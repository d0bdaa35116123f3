"""Sample accountability: shipments, the rep's inventory ledger, disbursement, transfers, counts, discrepancies."""
