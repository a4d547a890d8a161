"""Models, sessions, the state machine and data-access functions (one module per aggregate)."""
