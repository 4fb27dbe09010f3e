"""massface.train."""
