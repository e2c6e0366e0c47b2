"""The command-line interface: commands parse, call one service, and render."""
