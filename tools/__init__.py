"""What the agent can do; every tool is usable without an LLM."""
