"""Shared upstream and key state in the state store: cooldowns, quota readings, key limits.

Below both routing (which reads it to choose accounts) and the executors (which write what
upstreams report), so neither has to import the other for it.
"""
