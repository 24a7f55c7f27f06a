"""Shipped models (under `MultiModalGen/Resources/Models/`) and user adapters: finding and listing them."""
