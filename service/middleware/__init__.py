"""What wraps every request: its id, access line and metrics, the in-flight count, the body cap."""
