"""Architecture code: what a guest expects to find in memory and registers when it is entered."""
