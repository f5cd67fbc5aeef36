"""Side effects of the lifecycle, each idempotent by request id."""
