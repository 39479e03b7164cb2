"""w2vprof.measure."""
