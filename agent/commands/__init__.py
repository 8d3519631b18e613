"""Subcommands of `radconsult`, one module per area; each exposes ``register(subparsers)``."""
