"""API client commands. Filled in below."""
