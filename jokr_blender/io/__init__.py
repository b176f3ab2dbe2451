"""bpy-free logic of the add-on: the engine's protocol, job state, coordinates, files and processes.

Nothing in this package imports bpy (or the engine), so it is unit-tested in any Python."""
