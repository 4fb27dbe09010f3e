"""massface.infer."""
