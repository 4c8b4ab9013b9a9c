"""Guided add-account flows for the admin: a registry of step-by-step flows per provider.

A provider plugs in by adding `accounts/<provider>/flows.py` with `FLOWS = [MyFlow, ...]`
(classes derived from accounts.flows.base.AccountFlow); the registry finds it by name, so
nothing here changes when GitLab or Codex arrive.
"""

from accounts.flows.base import AccountFlow, FlowError, Step
from accounts.flows.registry import flow_get, flows_all, flows_by_provider

__all__ = ["AccountFlow", "FlowError", "Step", "flow_get", "flows_all", "flows_by_provider"]
