"""Small infrastructure helpers every layer may use (database access from async code)."""
