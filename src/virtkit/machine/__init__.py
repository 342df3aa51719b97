"""The machine: built from a config in boot-sequence order, run by vCPU threads, controlled from outside."""
