"""One module per ``qriff`` subcommand; each exposes ``register(subparsers)``."""
