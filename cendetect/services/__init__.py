"""Long-running services: the polled folder (``watch``) and the Redis worker (``redis``)."""
