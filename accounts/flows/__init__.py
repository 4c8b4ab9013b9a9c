"""Guided add-account flows for the admin: a registry of step-by-step flows per provider.

A provider lists its flows (classes derived from accounts.flows.base.AccountFlow) in the
Provider it registers (accounts.providers); nothing here names a provider.
"""

from accounts.flows.base import AccountFlow, FlowError, Step
from accounts.flows.registry import flow_get, flows_all, flows_by_provider

__all__ = ["AccountFlow", "FlowError", "Step", "flow_get", "flows_all", "flows_by_provider"]
