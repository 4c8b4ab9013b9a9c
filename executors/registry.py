"""Provider kind → executor. The only place that knows which executors exist."""

from __future__ import annotations

from executors.base import Executor
from executors.openai_compat.executor import OpenAICompatExecutor

_EXECUTORS: dict[str, Executor] = {
    OpenAICompatExecutor.provider: OpenAICompatExecutor(),
}


def executor_for(provider: str) -> Executor | None:
    return _EXECUTORS.get(provider)
