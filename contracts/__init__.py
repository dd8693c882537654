"""The deterministic state machine of assets, roles and governance."""
