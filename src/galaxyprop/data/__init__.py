"""Dataset layout, catalogue readers, splits."""
