"""Field-force visits: draft -> submitted, amendments that supersede."""
