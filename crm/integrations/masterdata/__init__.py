"""Master data: the NPPES NPI registry import (streaming, resumable, upserting by natural key)."""
