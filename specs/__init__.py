"""The built-in probe specs, shipped as package data (one TOML file per probe)."""
