"""iopt-hil: QEMU hardware-in-the-loop tests for the Linux Rust io_pgtable abstraction."""
__version__ = "0.1.0"
