"""The agent's TOML configuration: its settings, inventory sections and the key files it names."""
