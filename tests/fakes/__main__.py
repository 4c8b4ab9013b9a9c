"""`python -m tests.fakes` starts the OpenAI-compatible fake (same flags as its module)."""

from tests.fakes.openai_compat import main

main()
