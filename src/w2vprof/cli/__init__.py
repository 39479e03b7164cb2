"""Command-line interface: one module per command, each thin (parse -> options -> library -> write)."""
