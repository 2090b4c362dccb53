"""ELF facts, closure and the ELF scan against compiled fixtures."""
