//! Housekeeping through the core: statistics, max_memory, resending, max_keepalive.
