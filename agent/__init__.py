"""radconsult's conversation layer: settings, LLM backends, agent loop, evidence, summary, UI, CLI."""

__version__ = "0.1.0"
