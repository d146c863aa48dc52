"""Container logs: reading CRI log files (crilog.py) and rotating them (rotation.py)."""
