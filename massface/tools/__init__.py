"""Dataset and file-format utilities shared by the stages (no TensorFlow here)."""
