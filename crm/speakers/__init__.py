"""KOL profiles (influence tier, expertise), speaker qualifications, and the speakers of events."""
