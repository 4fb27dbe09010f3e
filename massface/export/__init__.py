"""massface.export."""
