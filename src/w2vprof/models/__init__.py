"""w2vprof.models."""
