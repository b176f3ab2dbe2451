"""The bpy layer: one module per concern (see docs/ADDON.md)."""
