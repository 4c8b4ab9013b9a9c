"""Operational visibility: Prometheus metrics, request ids, structured logs.

A leaf package (no models, no routing logic) so that routing, accounts and audit can all
call it without import cycles. See docs/observability.md.
"""
