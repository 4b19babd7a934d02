"""Beyond one process: Ray Serve sessions and Ray Data archives."""
