"""The pydantic models of the config file: one per table, the root `Settings` last."""
