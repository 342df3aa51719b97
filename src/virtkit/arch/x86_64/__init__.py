"""x86_64: memory layout, boot protocols (Linux bzImage, PVH), GDT/page tables, CPUID."""
