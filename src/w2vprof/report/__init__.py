"""w2vprof.report."""
