"""What people and tools use: the `erasure` command, the HTTP API, the DPO status page, the
certificate of erasure, metrics, and the views of the store they share."""
