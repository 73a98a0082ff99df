"""Sample-quality metrics (built-in plugins registered on import of their modules)."""
