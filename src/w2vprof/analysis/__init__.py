"""w2vprof.analysis."""
