"""Users, API tokens, server-side web sessions and login throttling."""
