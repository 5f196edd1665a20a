"""invsync."""
