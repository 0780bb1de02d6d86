"""``mgiad bench``: speed and memory of training steps and folded inference."""
