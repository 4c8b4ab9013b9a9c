"""Realistic fake upstream servers for tests and demos (no Django imports here)."""
