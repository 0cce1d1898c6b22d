"""plantain's built-in plugins (installed as ``plantain_plugins``).

They use only plantain_core's public API and are registered through the same
``plantain`` entry-point group as third-party plugins.
"""
