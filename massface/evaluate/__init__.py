"""massface.evaluate."""
