"""Model catalog: which accounts serve which model names."""

from __future__ import annotations

from accounts.selectors import AccountInfo, account_usable, accounts_enabled


async def model_candidates(model: str) -> list[AccountInfo]:
    """Usable accounts serving `model`, highest priority first (stable order within a tier)."""
    accounts = await accounts_enabled()
    found = [a for a in accounts if model in a.model_names and account_usable(a)]
    found.sort(key=lambda a: -a.priority)
    return found


async def catalog_models() -> list[tuple[str, int]]:
    """Every model name served by a usable account, with the newest account id as 'created'."""
    seen: dict[str, int] = {}
    for account in await accounts_enabled():
        if not account_usable(account):
            continue
        for name in account.model_names:
            seen.setdefault(name, account.id)
    return sorted(seen.items())
