"""w2vprof.sweep."""
